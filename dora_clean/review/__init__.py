"""Step 7, review: the run's scores in FiftyOne (:mod:`.dataset`), the s-AMS atlas (:mod:`.atlas`), and
the App (:mod:`.app`). FiftyOne is imported inside the functions, so the rest of the package does not
pay for its import (seconds) or need its database (:mod:`.database`)."""
from .app import launch_review, review_url
from .atlas import ATLAS_BRAIN_KEY, atlas_to_fiftyone
from .database import import_fiftyone
from .dataset import (FLAGGED_TAG, FLAGGED_VIEW, KEEP_TAG, REMOVE_TAG, default_name, finding_field, finding_tag,
                      finding_view, run_findings, to_fiftyone)

__all__ = ["ATLAS_BRAIN_KEY", "FLAGGED_TAG", "FLAGGED_VIEW", "KEEP_TAG", "REMOVE_TAG", "atlas_to_fiftyone",
           "default_name", "finding_field", "finding_tag", "finding_view", "import_fiftyone", "launch_review",
           "review_url", "run_findings", "to_fiftyone"]
