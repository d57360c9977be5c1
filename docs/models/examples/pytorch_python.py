import asyncio

import numpy
import torch

import dffml
from dffml import Feature, Features, Model

import dffml_archive

torch.manual_seed(0)  # the same run every time
rng = numpy.random.RandomState(0)


def picture(brightness):
    """An 8x8 RGB picture around the given brightness, like cv2.imread's."""
    return numpy.clip(brightness + rng.randint(-30, 30, (8, 8, 3)), 0, 255).astype(numpy.uint8)


async def main():
    ResNet18 = Model.load("resnet18_archive")
    model = ResNet18(
        features=Features(Feature("image", int, 8 * 8 * 3)),
        predict=Feature("label", str, 1),
        classifications=["dark", "light"],
        # Upstream's ImageNet-trained network (weights downloaded once into
        # $TORCH_HOME/hub/checkpoints), its last layer replaced by one for
        # our two labels, all of it trained further (trainable=True).
        add_layers=True,
        layers={"fc": {"layer_type": "Linear", "in_features": 512, "out_features": 2}},
        imageSize=32,
        normalize_mean=[0.485, 0.456, 0.406],
        normalize_std=[0.229, 0.224, 0.225],
        trainable=True,
        optimizer="Adam",
        batch_size=2,
        epochs=5,
        location="resnet.zip",
    )
    records = [{"image": picture(40), "label": "dark"} for _ in range(8)]
    records += [{"image": picture(210), "label": "light"} for _ in range(8)]
    await dffml.train(model, *records)
    print("accuracy:", await dffml.accuracy(model, *records))

    # The whole trained network is in the archive: no weights are needed now.
    model = await dffml_archive.load_model("resnet.zip")
    print("recorded options:", model.config.imageSize, model.config.layers)
    unknown = [{"image": picture(50)}, {"image": picture(200)}]
    async for key, features, prediction in dffml.predict(model, *unknown):
        brightness = int(features["image"].mean())
        print(f"brightness {brightness} -> {prediction['label']['value']}")


asyncio.run(main())
