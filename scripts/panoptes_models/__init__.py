"""Model-side tooling of Panoptes that does not need Rust.

- `cache`    : cache layout, registry downloads (pip/npm/apt), extraction, venvs (stdlib only)
- `manifest` : load and validate models/manifest.toml (stdlib only)
- `convert`  : conversion worker, run inside a venv (onnx, tf2onnx)
- `decode`   : pre-processing and output decoders (numpy, Pillow); the reference the Rust
               `analytics` crate ports
"""
