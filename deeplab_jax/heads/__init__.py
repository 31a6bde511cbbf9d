"""Heads that turn backbone features into 256-channel segmentation features:
ASPP, the Dense Prediction Cell and the DeepLabv3+ decoder."""
