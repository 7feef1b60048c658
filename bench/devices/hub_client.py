"""The ``qai-hub`` client for Qualcomm AI Hub, imported only when the farm is used, and its errors as one line.

Shared by discovery (``aihub.py``) and the on-device bench (``on_device/aihub.py``).
"""

from __future__ import annotations

from egoedge.bench.devices.base import DeviceError

SETUP = ("configure the qai-hub client first: `qai-hub configure --api_token YOUR_TOKEN` (the token is in your "
         "AI Hub account settings)")


def client():
    """The ``qai_hub`` module (a dependency of egoedge; imported only when a farm is used)."""
    try:
        import qai_hub
    except ImportError as e:  # a broken install: say what is missing
        raise DeviceError(f"the qai-hub client cannot be imported ({e}); pip install qai-hub") from None
    return qai_hub


def hub_error(error: BaseException) -> str:
    """One line for anything the client raised: its missing configuration gets the setup hint."""
    text = " ".join(str(error).split()) or type(error).__name__
    if type(error).__name__ == "UserError" and "configuration" in text.lower():
        return f"AI Hub is not configured: {SETUP}"
    return f"AI Hub: {type(error).__name__}: {text[:300]}"
