"""Running models: tiled inference, runtime choice, export, batches and benchmark scoring."""
