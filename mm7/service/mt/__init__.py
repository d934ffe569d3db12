"""MT, application to handset: lease, build, submit, decide the outcome, correlate reports.

- ``dispatcher``: ``Dispatcher``, one per link: leases recipients from the store, submits them
  through the link's ``MM7Client`` and records what happened (submitted, retry, failed, expired);
- ``submit_build``: a leased item and its stored media into a ``SubmitReq`` (content fitted to
  the link's profile);
- ``reports``: ``DeliveryReports``, the inbound endpoint's handlers of DeliveryReportReq and
  ReadReplyReq, which record each against its message.
"""

from mm7.service.mt.dispatcher import Dispatcher
from mm7.service.mt.reports import DeliveryReports

__all__ = ["DeliveryReports", "Dispatcher"]
