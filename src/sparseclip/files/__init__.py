"""Writing files safely: atomic writes (temporary file, then rename) and one writer per folder (locks)."""
