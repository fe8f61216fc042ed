"""Vision encoders behind one dense-feature contract: registry, adapters, preprocessing and uploads."""
