"""Result files: records (the versioned schema), files (run directories, written atomically, read
with migrations), the generated JSON Schema, and the history stores. Runner and reporter meet here only."""
