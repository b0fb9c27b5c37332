"""One in-process queue every stream reads, and the last notices for late joiners."""

import queue
from collections import deque

notices = queue.Queue()
latest = deque(maxlen=20)
