"""The compositor CLI that runs inside each job container (filled in by issue 3)."""
