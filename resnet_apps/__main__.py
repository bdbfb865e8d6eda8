"""``python -m resnet_apps ...`` (this is what ``torchrun -m resnet_apps train RECIPE`` runs)."""

from resnet_apps.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
