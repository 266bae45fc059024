"""The tiny configs shared by the multi-process worker and its test."""

from colorjax.configs import load_config


def tiny_config(model: str):
    c = load_config(model, "cpu")
    c.model.features = (8, 16)
    c.model.width = 8
    c.data.image_size = 32
    c.batch_size = 4  # 2 per process
    c.optimizer.warmup_steps = 0
    c.optimizer.schedule = "constant"
    c.optimizer.learning_rate = 1e-4
    if "disc_optimizer" in c:
        c.disc_optimizer.learning_rate = 1e-4
        c.disc_optimizer.warmup_steps = 0
        c.disc_optimizer.schedule = "constant"
    return c
