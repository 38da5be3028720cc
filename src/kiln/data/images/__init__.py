"""Image datasets: a folder of your images (``data.name: image_folder``), their scan for bad files,
decoding, the preprocessing saved with the model, and seeded per-sample augmentation."""
