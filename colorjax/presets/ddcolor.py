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

Training uses the authors' losses (train_ddcolor.yml, `config.loss_terms`): L1 on ab,
a VGG16 perceptual term (colorjax's VGG16 in place of their vgg16_bn), the colourfulness term
and a GAN term (colorjax's PatchGAN in place of their discriminator), with their weights, the
perceptual and GAN targets' colours enhanced x1.2 as theirs; `--config.loss_terms.gan_weight=0`
trains without a discriminator. Variants: "" and `:large` (DDColor-L, ConvNeXt-L),
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
    c.precision = default.PUBLISHED_PRECISION  # the authors' float32 (default.py)
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
    # train_ddcolor.yml's losses (color_model.py optimize_parameters), on the composite of
    # the true L and the predicted ab (colorjax/objectives/loss_terms.py):
    default.add_loss_terms(
        c,
        # pixel_opt: L1Loss, loss_weight 0.1, on ab in Lab units; colorjax's ab is Lab / 110.
        pixel_weight=0.1 * 110.0,
        # perceptual_opt: perceptual_weight 5.0, layer_weights conv1_1 .. conv5_1 of
        # vgg16_bn 0.0625, 0.125, 0.25, 0.5, 1.0, here on the same blocks' relu1_2 ..
        # relu5_3 of colorjax's VGG16 (it has no vgg16_bn).
        perceptual_weight=5.0, perceptual_layer_weights=(0.0625, 0.125, 0.25, 0.5, 1.0),
        # colorfulness_opt: loss_weight 0.5 on the sum over a GPU's batch_size_per_gpu 4
        # images; colorjax averages over the batch: 0.5 x 4.
        colorfulness_weight=0.5 * 4,
        target_enhance=1.2,  # train: color_enhance True, color_enhance_factor 1.2
        gan_weight=1.0)  # gan_opt: vanilla (BCE), loss_weight 1.0
    # optim_d: Adam, lr 1e-4, betas (0.9, 0.99), no weight decay (add_loss_terms' own).
    if variant == "cpu":
        c.data.image_size = 64
    return c
