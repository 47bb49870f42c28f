"""Built-in logger plugins: MLflow and TensorBoard (each an optional extra)."""
