"""Decoding uploaded images safely: the byte size is checked before anything is parsed and the pixel count from the
header before a single pixel is decoded. A solid 4096x4096 PNG is 50 kB on the wire and 50 MB decoded, so the
pixel count is what bounds memory: a larger JPEG is decoded at a reduced scale (its decoder does that for free),
anything else larger is a refused request, not an out-of-memory server."""

from __future__ import annotations

import io
import warnings

from mllmcl.model.batching import MAX_IMAGE_SIDE
from mllmcl.serving.requests import RequestError, one_line

DEFAULT_MAX_PIXELS = 2048 * 2048
JPEG_SCALES = (2, 4, 8)  # the reductions libjpeg decodes at directly (Image.draft)


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
    where: str = "image",
):
    """An RGB PIL image from uploaded bytes, at most `max_pixels` decoded; too many bytes or pixels is a 413, a side
    under `min_side` or anything undecodable a 400."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise RequestError(400, f"{where}: empty image")
    if len(data) > max_bytes:
        raise RequestError(413, f"{where}: image is {len(data)} bytes; at most {max_bytes} are accepted")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            _check_size(im, max_pixels, min_side, where)  # from the header: nothing decoded yet
            im.load()
            if im.mode != "RGB":
                return im.convert("RGB")
            im.fp = None  # decoded: let the raw bytes go with their file object, without copying the pixels
            return im
    except RequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise RequestError(413, f"{where}: too many pixels ({_reason(e)}); at most {max_pixels} are decoded") from None
    except UnidentifiedImageError:
        raise RequestError(400, f"{where}: not an image (PNG, JPEG, ... expected)") from None
    except Exception as e:  # untrusted bytes: any decoder failure (truncated, corrupt, exotic mode) is the client's
        raise RequestError(400, f"{where}: not a readable image ({_reason(e)})") from None


def _check_size(im, max_pixels: int, min_side: int, where: str) -> None:
    """Refuse (or, for a JPEG, shrink the decode of) an image whose header promises too many pixels."""
    w, h = im.size
    if min(w, h) < min_side:
        raise RequestError(400, f"{where}: image is {w}x{h} pixels; each side must be at least {min_side}")
    if max(w, h) > MAX_IMAGE_SIDE:
        raise RequestError(413, f"{where}: image is {w}x{h} pixels; the largest side accepted is {MAX_IMAGE_SIDE}")
    if w * h <= max_pixels:
        return
    if im.format == "JPEG":
        for scale in JPEG_SCALES:
            size = (-(-w // scale), -(-h // scale))
            if size[0] * size[1] <= max_pixels:
                im.draft("RGB", size)  # libjpeg decodes straight at 1/scale: the full image never exists
                if im.size[0] * im.size[1] <= max_pixels:
                    return
                break
    raise RequestError(
        413, f"{where}: image is {w}x{h} = {w * h} pixels; at most {max_pixels} are decoded (send it downscaled)"
    )


def _reason(e: BaseException) -> str:
    return one_line(str(e), 200) or type(e).__name__
