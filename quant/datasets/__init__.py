"""Loaders for real wafer data sets (WM-811K pickle, MixedWM38 npz, PNG
folders) and multi-label metrics. pandas is needed only by ``wm811k`` and is
imported there lazily; everything else is numpy (+ pillow for PNG)."""
