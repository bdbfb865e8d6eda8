"""Prediction at scale: GeoTIFF scenes streamed block by block, DICOM / image folders to CSV.

Modules: ``tiling`` (block grid + MONAI blending), ``raster`` (window reads, COG writes), ``scene``
(``predict_scene``), ``folder`` (``predict_folder``); the checkpoint's preprocessing is ``data.preprocessing``.
Nothing is imported here, so ``import resnet_apps.predict`` stays cheap.
"""
