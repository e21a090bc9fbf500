"""The seed DORA README's flow, with the Dora class, on the model bundled with dora-clean.

    python examples/dora_api.py
"""
import torchvision.transforms as transforms

from dora_clean import Dora
from dora_clean.objectives import ChannelObjective
from dora_clean.demo import load_demo_model

model, info = load_demo_model()  # a tiny ResNet that learned a text watermark as a shortcut
neuron_indices = list(range(64))
my_transforms = transforms.Compose(
    [transforms.ToTensor(), transforms.Normalize(mean=info["mean"], std=info["std"])]
)

d = Dora(model=model, image_transforms=my_transforms, device="auto")
d.generate_signals(
    neuron_idx=neuron_indices,
    layer=model.layer3,
    objective_fn=ChannelObjective(),
    lr=0.05,
    width=64,
    height=64,
    iters=128,
    experiment_name="model.layer3",
    overwrite_experiment=True,  # what already exists with the same settings is reused
)
d.collect_encodings(layer=model.layer3, experiment_name="model.layer3")
# "PCA" as in the seed README; "kNN" (dora-clean's default) found the watermark
# detectors best on the planted-artifact benchmark.
for method in ("PCA", "kNN"):
    result = d.run_outlier_detection(
        experiment_name="model.layer3", neuron_idx=neuron_indices, method=method, outliers_fraction=0.05
    )
    print(f"{method}: outlier neurons, most anomalous first:", result.outlier_neuron_idx)
print("atlas coordinates:", result.embeddings.shape)
result.visualize("dora-atlas.png")
