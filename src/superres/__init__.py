"""superres: single-image super-resolution (SRCNN and beyond) for CPUs.

``superres.upscale(image, model="default", scale=4)`` enlarges a numpy array or PIL image;
``superres.upscale_file(src, dst)`` an image, animation or video file;
``superres.load_model(name, scale)`` gives the network and its description; ``model`` and
``name`` may also be a weights file's path (``superres train``'s, or with
``superres[community]`` another project's). Everything else lives in the submodules named
after their job.
"""

from superres.api import upscale, upscale_file
from superres.engine.inference import Upscaler
from superres.errors import SuperresError
from superres.models import load_model

__version__ = "0.1.0"
__all__ = [
    "SuperresError",
    "Upscaler",
    "__version__",
    "load_model",
    "upscale",
    "upscale_file",
]
