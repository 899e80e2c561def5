"""An adversarial fine-tune, built from nothing pretrained (none can be downloaded here).

Real-ESRGAN sharpens with a U-Net discriminator (spectral norm) and a VGG perceptual loss. Here
the discriminator is a smaller U-Net of the same kind, trained from scratch beside the
generator, and the perceptual loss is *feature matching*: the L1 distance between the
discriminator's inner features of the output and of the ground truth. Those features are
learnt to tell real texture from the generator's, which is what a perceptual loss is for, and
they need no outside weights. The discriminator lives in the checkpoint only; the exported
weights are the generator's alone.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from superres.training.distributed import World


class BlurHalving(nn.Module):
    """A binomial blur, then every other pixel (Zhang, "Making convolutional networks
    shift-invariant again", 2019). A plain stride-2 convolution sends back gradients with its
    stride's period, and a fine-tuned generator learnt that as a checkerboard (docs/training.md,
    real steps 12 and 19); the blur has no response at that period."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :]) / taps.sum() ** 2
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(padded, self.kernel.to(x.dtype), stride=2, groups=x.shape[1])


def _down(channels_in: int, channels_out: int) -> nn.Module:
    return nn.Sequential(
        spectral_norm(nn.Conv2d(channels_in, channels_out, 3, padding=1)),
        BlurHalving(channels_out),
    )


def _same(channels_in: int, channels_out: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(channels_in, channels_out, 3, padding=1))


class UNetDiscriminator(nn.Module):
    """Real-or-generated logits for every pixel, and the inner features feature matching
    compares. Three halvings and back, with skips, so a logit sees both local texture and
    about 60 pixels of context."""

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.down = nn.ModuleList(
            [_down(width, 2 * width), _down(2 * width, 4 * width), _down(4 * width, 4 * width)]
        )
        self.up = nn.ModuleList(
            [_same(4 * width, 4 * width), _same(4 * width, 2 * width), _same(2 * width, width)]
        )
        self.head = nn.Sequential(
            _same(width, width), nn.LeakyReLU(0.2), nn.Conv2d(width, 1, 3, padding=1)
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = [F.leaky_relu(self.stem(image), 0.2)]
        for layer in self.down:
            skips.append(F.leaky_relu(layer(skips[-1]), 0.2))
        features = skips[1:]
        x = skips.pop()
        for layer in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = F.leaky_relu(layer(x), 0.2) + skip
            features.append(x)
        return self.head(x), features


class Adversary:
    """The discriminator, its optimiser and the two losses it adds to the generator's."""

    def __init__(
        self,
        channels: int,
        world: World,
        adversarial_weight: float,
        feature_weight: float,
        bf16: bool,
    ) -> None:
        self.discriminator = UNetDiscriminator(channels).to(world.device)
        self.parallel = world.wrap(self.discriminator)
        # Real-ESRGAN's GAN stage: Adam with betas (0.9, 0.99), same rate as the generator.
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), betas=(0.9, 0.99))
        self.adversarial_weight = adversarial_weight
        self.feature_weight = feature_weight
        self.bf16 = bf16

    def _judge(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits, features = self.parallel(images)
        return logits.float(), [f.float() for f in features]

    def generator_loss(self, output: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """Fool the discriminator, and match its features of the truth. One pass over output
        and truth together (DDP allows one forward per backward)."""
        logits, features = self._judge(torch.cat([output, truth]))
        count = len(output)
        fooled = F.binary_cross_entropy_with_logits(logits[:count], torch.ones_like(logits[:count]))
        matched = sum(F.l1_loss(f[:count], f[count:].detach()) for f in features)
        return self.adversarial_weight * fooled + self.feature_weight * matched

    def step(self, output: torch.Tensor, truth: torch.Tensor, lr: float) -> None:
        """One discriminator update: truth is real, the (detached) output generated."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        logits, _ = self._judge(torch.cat([truth, output.detach()]))
        labels = torch.cat(
            [torch.ones_like(logits[: len(truth)]), torch.zeros_like(logits[len(truth) :])]
        )
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def state_dict(self) -> dict:
        return {
            "network": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.discriminator.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
