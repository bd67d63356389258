"""posemill.ingest: native motion-capture datasets to the zarr motion store (see DESIGN.md)."""
