"""The tables, one module per area. One person is one Contact; the ways we see them (openid,
unionid, WeCom external_userid) are Identity rows, so later channels add identities, not
contacts. Importing this package registers every table on ``SQLModel.metadata``."""

from bot.core.models.audiences import Segment, SegmentMember
from bot.core.models.campaigns import (
    Campaign,
    PointsBalance,
    PointsEntry,
    Redemption,
    Referral,
    Reward,
    Signup,
)
from bot.core.models.columns import BIGINT, JSONType, UTCDateTime, ts_column, utcnow
from bot.core.models.contacts import Contact, ContactTag, Event, EventTag, Identity, Outbox
from bot.core.models.journeys import (
    Enrollment,
    Journey,
    JourneyVersion,
    OptimisationLog,
    SplitAssignment,
    StepRun,
    WebhookDelivery,
    WebhookEndpoint,
)
from bot.core.models.menus import Menu, MenuVersion
from bot.core.models.messaging import (
    Broadcast,
    BroadcastOptimisation,
    MassSend,
    Media,
    Message,
    MessageClick,
    ReplyRule,
)
from bot.core.models.sales import Channel, FollowUser, LeadAssignment, Rep
from bot.core.models.salesops import (
    CustomerTransfer,
    FollowUpReminder,
    LeadReturnReason,
    QuickReply,
    QuickReplyGroup,
)
from bot.core.models.scoring import ScoreEntry, ScoreRecompute, ScoringRuleSet
from bot.core.models.tagging import CorpTag, InterestWord, PlatformTag, TagRule, TagSync

__all__ = [
    "Segment",
    "SegmentMember",
    "BIGINT",
    "JSONType",
    "UTCDateTime",
    "ts_column",
    "utcnow",
    "Contact",
    "Identity",
    "Event",
    "ContactTag",
    "EventTag",
    "Outbox",
    "ReplyRule",
    "Broadcast",
    "BroadcastOptimisation",
    "Message",
    "MessageClick",
    "SplitAssignment",
    "OptimisationLog",
    "MassSend",
    "Media",
    "Rep",
    "FollowUser",
    "Channel",
    "LeadAssignment",
    "QuickReplyGroup",
    "QuickReply",
    "FollowUpReminder",
    "CustomerTransfer",
    "LeadReturnReason",
    "TagRule",
    "InterestWord",
    "CorpTag",
    "PlatformTag",
    "TagSync",
    "ScoringRuleSet",
    "ScoreEntry",
    "ScoreRecompute",
    "Journey",
    "JourneyVersion",
    "Enrollment",
    "StepRun",
    "WebhookEndpoint",
    "WebhookDelivery",
    "Menu",
    "MenuVersion",
    "Campaign",
    "Referral",
    "Signup",
    "PointsEntry",
    "PointsBalance",
    "Reward",
    "Redemption",
]
