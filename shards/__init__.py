"""posemill.shards: webdataset segments of the motion store, the manifest, data mixtures and the streaming
loader that training reads (DESIGN.md, "Shards").

``DATASETS`` fixes the dataset ids carried by every batch (``batch["dataset"]`` indexes this tuple); it is
:data:`ingest.conventions.DATASETS`.
"""

from ingest.conventions import DATASETS as DATASETS
