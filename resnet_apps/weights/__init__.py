"""Where a backbone's starting weights come from: locations, the hub probe, file readers, the store, the resolver.

This package imports nothing from :mod:`resnet_apps.models`; the models ask it for weights, never the reverse.
Module order (each imports only those before it): ``locations`` (leaf: folders, ``ResolvedWeights``),
``hub`` (bounded network probe), ``files`` (reading user files and run dirs), ``store`` (fetch / verify / list),
``resolve`` (the resolver), ``conv1`` (band-aware first convolution).
"""
