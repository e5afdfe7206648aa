from shop.settings import *  # noqa: F403

DRIFTLOCK = {**DRIFTLOCK, "ASYNC_MODE": False}  # noqa: F405
