"""Whole contacts of invented people, per channel, as JSON-shaped raw events.

`ContactStream(n, seed).contacts()` yields, endlessly and deterministically, the events of
one contact at a time (a call and maybe its recording, a chat session and maybe its
transcript, ...). People come from a pool of max(50, n/2): 30 % of contacts are by frequent
callers drawn Zipf-like (weight 1/(rank+20)), the rest by anyone in the pool, so most people
contact more than once and a few very often; each system spells their number its own way.
Chats carry an e-mail address and, 60 % of the time, a phone number. 0.5 % of contacts name
a service the policy does not know, `UNKNOWN_SERVICE`, which the router must quarantine.

The events carry what contact-centre KPIs are computed from: queue waits (some calls
abandoned), wrap-up times, callbacks requested and done, chat first responses, e-mail and
social response times, survey medium, the channel surveyed and CSAT (SMS surveys).
"""

from __future__ import annotations

import bisect
import itertools
import random
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from streams.dev.bench import texts

CHANNEL_WEIGHTS: Final = {"phone": 40, "chat": 15, "email": 15, "survey": 20, "social": 10}
UNKNOWN_SERVICE: Final = "meter_campaign"
_BRUSSELS_WINTER: Final = timezone(timedelta(hours=1))
_START: Final = datetime(2025, 3, 3, 7, 30, tzinfo=_BRUSSELS_WINTER)
_ABANDONED: Final = 0.07  # share of inbound calls hung up in the queue
_CALLBACK_DONE: Final = 0.75  # share of callback requests followed by the callback
_NPS_WEIGHTS: Final = (2, 1, 1, 2, 2, 4, 5, 9, 14, 16, 12)  # scores 0..10, skewed high


@dataclass(frozen=True)
class Person:
    """An invented person; `mobile` is the 9-digit national number (47x xx xx xx)."""

    language: str
    first: str
    last: str
    mobile: str
    email: str
    customer_ref: str | None
    handle: tuple[str, str]


@dataclass(frozen=True)
class RawEvent:
    """One JSON-shaped raw event (what a producer writes on a .jsonl line) and its channel."""

    channel: str
    event: dict[str, Any]


def _event(channel: str, envelope: dict[str, Any], kind: str, payload: dict[str, Any]) -> RawEvent:
    return RawEvent(channel, {"envelope": envelope, "kind": kind, "payload": payload})


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _person(rng: random.Random, index: int) -> Person:
    language = "de" if rng.random() < 0.25 else "fr"
    first = rng.choice(texts.FIRST_NAMES[language])
    last = rng.choice(texts.LAST_NAMES[language])
    local = f"{_ascii(first)}.{_ascii(last).replace(' ', '')}{index}"
    return Person(
        language=language,
        first=first,
        last=last,
        mobile=f"47{rng.randrange(10_000_000):07d}",
        email=f"{local}@example.org",
        customer_ref=f"ORES-CUST-{rng.randrange(10**10):010d}" if rng.random() < 0.6 else None,
        handle=(rng.choice(("facebook", "instagram", "x")), f"{local}.example"),
    )


def _phone(rng: random.Random, person: Person) -> str:
    """The person's number as one of the systems would spell it."""
    n = person.mobile
    return rng.choice(
        (
            f"+32 {n[:3]} {n[3:5]} {n[5:7]} {n[7:]}",
            f"0{n[:3]} {n[3:5]} {n[5:7]} {n[7:]}",
            f"0032{n}",
            f"+32{n}",
        )
    )


def _email(rng: random.Random, person: Person) -> str:
    return person.email if rng.random() < 0.8 else person.email.title()


def _agent(person: Person, number: int) -> str:
    """An agent of the site that speaks the person's language."""
    return f"agent-{'eup' if person.language == 'de' else 'gos'}-{number:03d}"


def _csat(rng: random.Random, score: int) -> int:
    """A 1-5 satisfaction score given with a 0-10 one: close to it, now and then off by one."""
    return max(1, min(5, 1 + round(score * 0.4) + rng.choice((-1, 0, 0, 0, 1))))


class ContactStream:
    """Deterministic generator of contacts for a workload of about `n` events."""

    def __init__(self, n: int, seed: int) -> None:
        self.rng = random.Random(seed)
        pool = max(50, n // 2)
        self.people = [_person(self.rng, i) for i in range(pool)]
        self.cum_weights = list(itertools.accumulate(1.0 / (r + 21) for r in range(pool)))
        self.clock = _START
        self.seq = itertools.count(1)

    def person(self) -> Person:
        """30 %: a frequent caller (Zipf-Mandelbrot by rank); else anyone in the pool."""
        if self.rng.random() < 0.3:
            point = self.rng.random() * self.cum_weights[-1]
            return self.people[bisect.bisect_left(self.cum_weights, point)]
        return self.people[self.rng.randrange(len(self.people))]

    def at(self, seconds: float = 0.0) -> str:
        return (self.clock + timedelta(seconds=seconds)).isoformat(timespec="seconds")

    def envelope(
        self,
        contact_id: str,
        source: str,
        service: str,
        person: Person,
        subject: dict[str, Any],
        seconds: float = 0.0,
        **extra: Any,
    ) -> dict[str, Any]:
        site = "eupen" if person.language == "de" else "gosselies"
        return {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "contact_id": contact_id,
            "occurred_at": self.at(seconds),
            "source_system": source,
            "client": "ORES",
            "service": service,
            "site": site if self.rng.random() < 0.7 else None,
            "language": person.language,
            "subject": subject,
            **extra,
        }

    def text(self, pool: Mapping[str, tuple[str, ...]], language: str, length: int) -> str:
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < length:
            parts.append(self.rng.choice(pool[language]))
        return " ".join(parts)

    def service(self, usual: str) -> str:
        return UNKNOWN_SERVICE if self.rng.random() < 0.005 else usual

    def contacts(self) -> Iterator[list[RawEvent]]:
        makers: dict[str, Callable[[Person, int], list[RawEvent]]] = {
            "phone": self.phone,
            "chat": self.chat,
            "email": self.email,
            "survey": self.survey,
            "social": self.social,
        }
        channels, weights = list(CHANNEL_WEIGHTS), list(CHANNEL_WEIGHTS.values())
        while True:
            self.clock += timedelta(seconds=self.rng.expovariate(1 / 20))
            channel = self.rng.choices(channels, weights)[0]
            yield makers[channel](self.person(), next(self.seq))

    def phone(self, person: Person, seq: int) -> list[RawEvent]:
        rng, cid = self.rng, f"call-{self.clock:%Y%m%d}-{seq:06d}"
        subject = {"phone": _phone(rng, person), "customer_ref": person.customer_ref}
        roll = rng.random()
        if roll < 0.12:
            when = self.at(rng.randrange(1800, 14400))
            payload: dict[str, Any] = {"callback_id": f"cb-{seq:06d}", "requested_for": when}
            if rng.random() < 0.3:
                payload["callback_number"] = _phone(rng, person)
            service = self.service("callback")
            env = self.envelope(cid, "acd", service, person, subject)
            events = [_event("phone", env, "callback_requested", payload)]
            if rng.random() < _CALLBACK_DONE:
                events.append(self.callback_done(person, seq, cid, subject, service))
            return events
        if roll < 0.20:
            env = self.envelope(cid, "web-c2c", self.service("click_to_call"), person, subject)
            page = "/de/stoerungen/melden" if person.language == "de" else "/fr/pannes/signaler"
            payload = {"request_id": f"c2c-{seq:06d}", "page": page}
            return [_event("phone", env, "click_to_call", payload)]
        service = self.service(
            rng.choice(
                (
                    "outage_report",
                    "customer_contact",
                    "incoming_call",
                    "intervention_followup",
                    "complaint",
                )
            )
        )
        wait = min(int(rng.expovariate(1 / 18)), 600)  # seconds in the queue
        if rng.random() < _ABANDONED:
            call = self.abandoned_call(person, seq, service, wait)
            env = self.envelope(cid, "acd", service, person, subject)
            return [_event("phone", env, "inbound_call", call)]
        duration = rng.randrange(40, 900)
        agent = _agent(person, rng.randrange(1, 80))
        call = {
            "call_id": f"acd-{seq:06x}",
            "queue": f"ores-{service}-{person.language}",
            "agent_id": agent,
            "answered_at": self.at(),
            "ended_at": self.at(duration),
            "duration_s": duration,
            "outcome": "answered",
            "ivr_path": f"{person.language}>{service}",
            "queued_at": self.at(-wait),
            "wrap_up_s": rng.randrange(10, 240),
        }
        events = [
            _event(
                "phone",
                self.envelope(cid, "acd", service, person, subject, duration),
                "inbound_call",
                call,
            )
        ]
        if rng.random() < 0.7:
            purpose = "coaching" if rng.random() < 0.1 else "contact_handling"
            recording = {
                "recording_id": f"rec-{seq:06x}",
                "call_id": call["call_id"],
                "media_ref": f"recstore://calls/{self.clock:%Y/%m/%d}/rec-{seq:06x}.opus",
                "started_at": self.at(),
                "ended_at": self.at(duration),
                "agent_id": agent,
            }
            env = self.envelope(
                cid,
                "recorder",
                service,
                person,
                {"phone": subject["phone"]},
                duration + 20,
                purpose=purpose,
            )
            events.append(_event("phone", env, "recording_available", recording))
        return events

    def abandoned_call(self, person: Person, seq: int, service: str, wait: int) -> dict[str, Any]:
        """An inbound call hung up after `wait` seconds in the queue (it ends now)."""
        return {
            "call_id": f"acd-{seq:06x}",
            "queue": f"ores-{service}-{person.language}",
            "agent_id": None,
            "answered_at": None,
            "ended_at": self.at(),
            "duration_s": wait,
            "outcome": "abandoned",
            "ivr_path": f"{person.language}>{service}",
            "queued_at": self.at(-wait),
            "wrap_up_s": None,
        }

    def callback_done(
        self, person: Person, seq: int, cid: str, subject: dict[str, Any], service: str
    ) -> RawEvent:
        """The agent's call that answers a callback request, some hours later."""
        duration = self.rng.randrange(30, 600)
        call = {
            "call_id": f"acd-cb-{seq:06x}",
            "agent_id": _agent(person, self.rng.randrange(1, 80)),
            "reason": "callback",
            "duration_s": duration,
        }
        later = self.rng.randrange(1800, 14400) + duration
        env = self.envelope(cid, "acd", service, person, subject, later)
        return _event("phone", env, "outbound_call", call)

    def chat(self, person: Person, seq: int) -> list[RawEvent]:
        rng, cid, lang = self.rng, f"chat-{self.clock:%Y%m%d}-{seq:06d}", person.language
        subject: dict[str, Any] = {"email": _email(rng, person)}
        if rng.random() < 0.6:
            subject["phone"] = _phone(rng, person)
        bot = rng.random() < 0.4
        count = rng.randrange(4, 13)
        session = {
            "session_id": f"chat-{seq:06d}",
            "started_at": self.at(),
            "ended_at": self.at(60 * count),
            "message_count": count,
            "handed_to_agent": not bot or rng.random() < 0.5,
            "agent_id": None if bot else f"agent-gos-{rng.randrange(1, 80):03d}",
            "first_response_at": self.at(rng.randrange(1, 4) if bot else rng.randrange(5, 240)),
        }
        service = self.service("chatbot" if bot else "chat")
        events = [
            _event(
                "chat",
                self.envelope(cid, "chat-gateway", service, person, subject, 60 * count),
                "chatbot_session" if bot else "chat_session",
                session,
            )
        ]
        if not bot or rng.random() < 0.5:
            senders = ("customer", "agent", "bot")
            pools = (texts.CUSTOMER_SENTENCES, texts.AGENT_SENTENCES, texts.BOT_SENTENCES)
            messages = []
            for i in range(count):
                who = 2 if bot and i < 2 else i % 2
                messages.append(
                    {
                        "sender": senders[who],
                        "sent_at": self.at(60 * i),
                        "text": self.text(pools[who], lang, rng.randrange(40, 200)),
                    }
                )
            transcript = {
                "transcript_id": f"tr-{seq:06d}",
                "session_id": session["session_id"],
                "messages": messages,
            }
            env = self.envelope(cid, "chat-gateway", service, person, subject, 60 * count + 30)
            events.append(_event("chat", env, "transcript_available", transcript))
        return events

    def email(self, person: Person, seq: int) -> list[RawEvent]:
        rng, cid, lang = self.rng, f"mail-{self.clock:%Y%m%d}-{seq:06d}", person.language
        subject: dict[str, Any] = {"email": _email(rng, person)}
        if person.customer_ref and rng.random() < 0.5:
            subject["customer_ref"] = person.customer_ref
        service = self.service(rng.choice(("email", "complaint", "customer_contact")))
        mailbox = "kunden@ores.example" if lang == "de" else "clients@ores.example"
        topic = rng.choice(texts.EMAIL_SUBJECTS[lang])
        body = (
            f"{texts.GREETINGS[lang]} "
            f"{self.text(texts.CUSTOMER_SENTENCES, lang, rng.randrange(250, 1400))} "
            f"{texts.CLOSINGS[lang]} {person.first} {person.last}, "
            f"{rng.choice(texts.TOWNS[lang])}"
        )
        received = {
            "message_id": f"<{seq}.{rng.randrange(10**6)}@mail.example.org>",
            "mailbox": mailbox,
            "subject": topic,
            "body": body,
            "attachment_count": rng.choice((0, 0, 0, 1, 2)),
        }
        env = self.envelope(cid, "mail-gateway", service, person, subject)
        events = [_event("email", env, "email_received", received)]
        if rng.random() < 0.5:
            reply = {
                "message_id": f"<{seq}.r@ores.example>",
                "mailbox": mailbox,
                "subject": f"RE: {topic}",
                "attachment_count": 0,
                "body": self.text(texts.AGENT_SENTENCES, lang, rng.randrange(200, 700)),
                "in_reply_to": received["message_id"],
                "replied_to_received_at": env["occurred_at"],
            }
            delay = rng.randrange(900, 2 * 86400)  # answered within minutes to two days
            env = self.envelope(cid, "mail-gateway", service, person, subject, delay)
            events.append(_event("email", env, "email_sent", reply))
        return events

    def survey(self, person: Person, seq: int) -> list[RawEvent]:
        rng, cid = self.rng, f"srv-{self.clock:%Y%m%d}-{seq:06d}"
        subject = {"phone": _phone(rng, person)}
        service = self.service("satisfaction_survey")
        sent = {
            "survey_id": f"nps-{seq:06d}",
            "survey_type": rng.choice(("sms", "nps")),
            "related_contact_id": f"call-{self.clock:%Y%m%d}-{max(1, seq - 3):06d}",
        }
        env = self.envelope(cid, "survey-tool", service, person, subject)
        events = [_event("survey", env, "survey_sent", sent)]
        if rng.random() < 0.4:
            comment = None
            if rng.random() < 0.5:
                comment = self.text(texts.CUSTOMER_SENTENCES, person.language, 80)
            score = rng.choices(range(11), _NPS_WEIGHTS)[0]
            answer = {
                "survey_id": sent["survey_id"],
                "score": score,
                "comment": comment,
                "survey_type": sent["survey_type"],
                "related_channel": "phone",  # the related contact is a call
                # an SMS survey also asks a 1-5 satisfaction score, close to the 0-10 one
                "csat": _csat(rng, score) if sent["survey_type"] == "sms" else None,
            }
            env = self.envelope(cid, "survey-tool", service, person, subject, 2400)
            events.append(_event("survey", env, "survey_answered", answer))
        return events

    def social(self, person: Person, seq: int) -> list[RawEvent]:
        rng, cid, lang = self.rng, f"soc-{self.clock:%Y%m%d}-{seq:06d}", person.language
        platform, handle = person.handle
        subject = {"social_handle": {"platform": platform, "handle": handle}}
        service = self.service("social_moderation")
        comment = {
            "comment_id": f"{platform[:2]}-c-{seq:06d}",
            "platform": platform,
            "post_ref": f"{platform[:2]}-p-{self.clock:%m%d}",
            "author_display_name": f"{person.first} {person.last}",
            "text": self.text(texts.CUSTOMER_SENTENCES, lang, rng.randrange(60, 280)),
        }
        env = self.envelope(cid, "social-tool", service, person, subject)
        events = [_event("social", env, "comment_received", comment)]
        roll = rng.random()
        if roll < 0.5:
            reply = {
                "comment_id": comment["comment_id"],
                "reply_id": f"r-{seq:06d}",
                "agent_id": f"agent-gos-{rng.randrange(1, 80):03d}",
                "text": self.text(texts.AGENT_SENTENCES, lang, rng.randrange(60, 240)),
                "comment_received_at": env["occurred_at"],
            }
            env = self.envelope(
                cid, "social-tool", service, person, subject, rng.randrange(300, 7200)
            )
            events.append(_event("social", env, "reply_sent", reply))
        elif roll < 0.6:
            moderated = {
                "comment_id": comment["comment_id"],
                "action": "hidden",
                "reason": "insult",
                "comment_received_at": env["occurred_at"],
            }
            env = self.envelope(
                cid, "social-tool", service, person, subject, rng.randrange(60, 1800)
            )
            events.append(_event("social", env, "moderated", moderated))
        return events
