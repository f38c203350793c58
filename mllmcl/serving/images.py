"""Decoding uploaded images safely: the byte size is checked before anything is parsed and the pixel size from the
header before a single pixel is decoded, so a 20000x20000 PNG (a few kB compressed, gigabytes decoded) is a
refused request, not an out-of-memory server."""

from __future__ import annotations

import io
import warnings

from mllmcl.model.batching import MAX_IMAGE_SIDE
from mllmcl.serving.requests import RequestError, one_line


def decode_image(data: bytes, *, max_bytes: int, where: str = "image"):
    """An RGB PIL image from uploaded bytes; too many bytes or pixels is a 413, anything undecodable a 400."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise RequestError(400, f"{where}: empty image")
    if len(data) > max_bytes:
        raise RequestError(413, f"{where}: image is {len(data)} bytes; at most {max_bytes} are accepted")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size  # from the header: nothing decoded yet
                if max(w, h) > MAX_IMAGE_SIDE:
                    raise RequestError(
                        413, f"{where}: image is {w}x{h} pixels; the largest side accepted is {MAX_IMAGE_SIDE}"
                    )
                im.load()
                return im.convert("RGB")
    except RequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise RequestError(
            413, f"{where}: too many pixels ({_reason(e)}); the largest side accepted is {MAX_IMAGE_SIDE}"
        ) from None
    except UnidentifiedImageError:
        raise RequestError(400, f"{where}: not an image (PNG, JPEG, ... expected)") from None
    except Exception as e:  # untrusted bytes: any decoder failure (truncated, corrupt, exotic mode) is the client's
        raise RequestError(400, f"{where}: not a readable image ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    return one_line(str(e), 200) or type(e).__name__
