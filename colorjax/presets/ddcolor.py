"""Kang et al. 2023, "DDColor: Towards Photo-Realistic Image Colorization via Dual
Decoders" (ICCV), the network of the authors' PyTorch code (piddnad/DDColor, Apache-2.0):
a ConvNeXt encoder, a pixel decoder and a query-based colour decoder; gray RGB in at 512 px,
ab out (colorjax/models/ddcolor.py, colorjax/objectives/ddcolor.py).

Start from the published weights (MODEL_ZOO.md): convert them once,

    python -m colorjax.convert --from=ddcolor_large --weights=ddcolor_modelscope.pth \
        --output=exports/ddcolor_large
    python -m colorjax.convert --from=ddcolor_tiny --weights=ddcolor_paper_tiny.pth \
        --output=exports/ddcolor_tiny

then colorize with that export, or fine-tune from it:

    python -m colorjax.main --config=configs/ddcolor.py:cpu --workdir=runs/dd_ft \
        --config.init_from=exports/ddcolor_tiny --config.data.folder=MY_PHOTOS

Training uses the regression family's L1 loss (the paper's pixel loss; its perceptual, GAN
and colourfulness terms are not here). Variants: "" and `:large` (DDColor-L, ConvNeXt-L),
`:tiny` (DDColor-T, ConvNeXt-T), both at the authors' 512 px inference size (infer.py's
--input_size); `:cpu` (DDColor-T fine-tuned on a CPU: 64 px, batch 8, 300 steps).
"""

from colorjax.presets import default

VARIANTS = {"": "DDColor-L (ConvNeXt-L encoder), 512 px",
            "large": "DDColor-L (ConvNeXt-L encoder), 512 px",
            "tiny": "DDColor-T (ConvNeXt-T encoder), 512 px",
            "cpu": "DDColor-T fine-tuned on a CPU: 64 px, batch 8, 300 steps"}


def get_config(variant: str = ""):
    default.check_variant(variant, VARIANTS)
    c = default.get_config("cpu" if variant == "cpu" else "")
    c.model.name = "ddcolor"
    # build_ddcolor_model (ddcolor/pipeline.py): model_size tiny -> convnext-t, else -l.
    c.model.encoder = "convnext-t" if variant in ("tiny", "cpu") else "convnext-l"
    c.model.num_queries = 100  # the published models' (pipeline.py's defaults)
    c.model.num_scales = 3
    c.model.dec_layers = 9
    c.model.backbone = "none"
    c.model.freeze_norm = False  # True: keep BatchNorm's running statistics in training
    c.model.hint_propagation = False  # a hint-free network (config.model.hints=False)
    c.data.image_size = 512  # scripts/infer.py's --input_size
    c.loss = "l1"  # the paper's pixel loss (train_ddcolor.yml: L1Loss)
    c.loss_rebalance = 0.0
    # train_ddcolor.yml's optim_g: AdamW, betas (0.9, 0.99), weight decay 0.01; lr 1e-4 from
    # scratch, smaller steps to fine-tune a trained network.
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 1e-5
    c.optimizer.b2 = 0.99
    c.optimizer.weight_decay = 0.01
    if variant == "cpu":
        c.data.image_size = 64
    return c
