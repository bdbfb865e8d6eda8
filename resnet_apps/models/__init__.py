"""Models: timm ResNet backbones, classification and FPN heads, checkpoints, the decision rule, Grad-CAM, export.

Imports torch. Starting weights come from :mod:`resnet_apps.weights`, which never imports this package.
"""
