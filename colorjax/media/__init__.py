"""Photos and videos: decoding, resizing, writing."""
