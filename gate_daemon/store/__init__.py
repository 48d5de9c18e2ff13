"""What the gate keeps on disk."""
