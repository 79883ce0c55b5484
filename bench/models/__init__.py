"""Models: the zoo, references resolved and exported (loader), seeded inputs, and FLOPs per sample."""
