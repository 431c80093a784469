"""Reading a video file back with plain OpenCV, independent of gi_sdk's own video sources.

Used by tests/test_demo.py (the overlay MP4) and tests/test_stream.py (file sources).
"""
import cv2


def read_frames(path) -> list:
    """Every frame of the video at ``path``, in order (BGR uint8)."""
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            cap.release()
            return frames
        frames.append(frame)
