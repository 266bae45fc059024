"""Process and host: XLA:CPU flags, host memory, the mesh, command-line helpers, progress
bars, file digests."""
