"""The shared KFP v2 components, one folder a step; each a thin wrapper over ``rsvl.steps``.

``BASE_IMAGE`` is the project's CPU image at this checkout's tag (``<version>-<git sha>``), so a
compiled pipeline pins the exact image, never ``latest``. The KFP local runner runs the same
bodies in this interpreter (the image is not used there).
"""

from rsvl.images import image_ref

BASE_IMAGE = image_ref("cpu")
