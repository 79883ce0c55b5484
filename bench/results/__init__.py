"""Result files: schema (versioned records), writer and reader. Runner and reporter meet here only."""
