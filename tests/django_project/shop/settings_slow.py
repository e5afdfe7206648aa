from shop.settings import *  # noqa: F403

DEBUG = False
DRIFTLOCK = {**DRIFTLOCK, "ASYNC_MODE": False}  # noqa: F405
