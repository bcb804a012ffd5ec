"""The seed's stack, as a peer for bench/peers.sh: the tasks API's read and create
endpoints in Flask, served by gunicorn, on MongoDB through pymongo or on an
in-memory dict. Same paths, same validation rules for a new task, same JSON (the
OpenAPI document's Task), RFC 9457 problems on errors, so the comparison is the
runtime, not the work done.

    TASKS_BACKEND=memory gunicorn -w 2 -b 127.0.0.1:8000 flask_app:app
    TASKS_BACKEND=mongo MONGODB_URI=mongodb://127.0.0.1:27017/ gunicorn ... flask_app:app
"""

import datetime as dt
import os
import re
import threading

from bson import ObjectId
from bson.errors import InvalidId
from flask import Flask, jsonify, request

app = Flask(__name__)
app.json.sort_keys = False
STATUSES = ("todo", "doing", "done")
ALLOWED = {"title", "description", "status", "priority", "tags", "due"}
MAX_BODY = 1024 * 1024
app.config["MAX_CONTENT_LENGTH"] = MAX_BODY


class MemoryStore:
    """A dict guarded by a lock (gthread workers share it within a process)."""

    def __init__(self):
        self.docs = {}
        self.lock = threading.Lock()

    def insert(self, doc):
        with self.lock:
            self.docs[doc["_id"]] = doc

    def get(self, oid):
        with self.lock:
            return self.docs.get(oid)

    def page(self, limit, after):
        with self.lock:
            docs = sorted(self.docs.values(), key=lambda d: (d["created"], d["_id"]))
        if after is not None:
            docs = [d for d in docs if (d["created"], d["_id"]) > after]
        return docs[: limit + 1]


class MongoStore:
    def __init__(self, uri, database):
        from pymongo import MongoClient

        self.coll = MongoClient(uri, maxPoolSize=32)[database]["tasks"]
        # The index the list's sort needs, as the host creates its own at start.
        self.coll.create_index([("created", 1), ("_id", 1)])

    def insert(self, doc):
        self.coll.insert_one(doc)

    def get(self, oid):
        return self.coll.find_one({"_id": oid})

    def page(self, limit, after):
        query = {}
        if after is not None:
            created, oid = after
            query = {"$or": [{"created": {"$gt": created}}, {"created": created, "_id": {"$gt": oid}}]}
        return list(self.coll.find(query).sort([("created", 1), ("_id", 1)]).limit(limit + 1))


def problem(status, slug, title, detail):
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    resp = jsonify(body)
    resp.status_code = status
    resp.content_type = "application/problem+json"
    return resp


def rfc3339(t):
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def to_json(d):
    return {
        "id": str(d["_id"]),
        "title": d["title"],
        "description": d["description"],
        "status": d["status"],
        "priority": d["priority"],
        "tags": d["tags"],
        "due": rfc3339(d["due"]),
        "created": rfc3339(d["created"]),
        "updated": rfc3339(d["updated"]),
        "version": d["version"],
    }


def nonblank(s):
    return isinstance(s, str) and re.search(r"\S", s) is not None


def validate(body):
    """The TaskInput rules of the OpenAPI document; returns (doc, None) or (None, detail)."""
    if not isinstance(body, dict):
        return None, "the body must be a JSON object"
    extra = set(body) - ALLOWED
    if extra:
        return None, f"unknown field {sorted(extra)[0]}"
    title = body.get("title")
    if not nonblank(title) or len(title) > 200:
        return None, "title: 1-200 characters, not blank"
    desc = body.get("description") or ""
    if not isinstance(desc, str) or len(desc.encode()) > 10240:
        return None, "description: a string of at most 10240 bytes"
    status = body.get("status") or "todo"
    if status not in STATUSES:
        return None, "status: one of todo, doing, done"
    prio = body.get("priority")
    prio = 3 if prio is None else prio
    if not isinstance(prio, int) or isinstance(prio, bool) or not 1 <= prio <= 5:
        return None, "priority: an integer from 1 to 5"
    tags = body.get("tags") or []
    if (not isinstance(tags, list) or len(tags) > 10 or len(set(map(str, tags))) != len(tags)
            or not all(nonblank(t) and len(t) <= 32 for t in tags)):
        return None, "tags: at most 10 unique non-blank strings of at most 32 characters"
    due = body.get("due")
    if due is not None:
        try:
            due = dt.datetime.fromisoformat(due.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
        except (AttributeError, ValueError):
            return None, "due: an RFC 3339 date-time"
        due = due.replace(tzinfo=None, microsecond=due.microsecond // 1000 * 1000)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    return {"_id": ObjectId(), "title": title, "description": desc, "status": status, "priority": prio,
            "tags": tags, "due": due, "created": now, "updated": now, "version": 1}, None


@app.post("/api/tasks")
def create():
    if request.mimetype != "application/json":
        return problem(415, "unsupported-media-type", "Unsupported media type", "send application/json")
    body = request.get_json(silent=True)
    if body is None:
        return problem(400, "invalid-json", "Malformed JSON", "the body is not valid JSON")
    doc, err = validate(body)
    if err:
        return problem(422, "validation", "Invalid task", err)
    STORE.insert(doc)
    resp = jsonify(to_json(doc))
    resp.status_code = 201
    resp.headers["Location"] = f"/api/tasks/{doc['_id']}"
    resp.headers["ETag"] = f'"v{doc["version"]}"'
    return resp


@app.get("/api/tasks/<tid>")
def get_one(tid):
    try:
        oid = ObjectId(tid)
    except (InvalidId, TypeError):
        return problem(404, "not-found", "No such resource", "no such task")
    doc = STORE.get(oid)
    if doc is None:
        return problem(404, "not-found", "No such resource", "no such task")
    resp = jsonify(to_json(doc))
    resp.headers["ETag"] = f'"v{doc["version"]}"'
    return resp


@app.get("/api/tasks")
def list_tasks():
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        return problem(400, "invalid-query", "Invalid query", "limit: an integer from 1 to 100")
    if not 1 <= limit <= 100:
        return problem(400, "invalid-query", "Invalid query", "limit: an integer from 1 to 100")
    after = None
    cursor = request.args.get("cursor")
    if cursor:
        try:
            ms, oid = cursor.split(".")
            after = (dt.datetime.fromtimestamp(int(ms) / 1000, dt.timezone.utc).replace(tzinfo=None), ObjectId(oid))
        except (ValueError, InvalidId):
            return problem(400, "invalid-query", "Invalid query", "cursor: not one this API issued")
    docs = STORE.page(limit, after)
    more = len(docs) > limit
    docs = docs[:limit]
    nxt = None
    if more:
        last = docs[-1]
        nxt = f"{int(last['created'].replace(tzinfo=dt.timezone.utc).timestamp() * 1000)}.{last['_id']}"
    return jsonify({"items": [to_json(d) for d in docs], "next_cursor": nxt})


if os.environ.get("TASKS_BACKEND", "memory") == "mongo":
    STORE = MongoStore(os.environ["MONGODB_URI"], os.environ.get("MONGODB_DATABASE", "tasks"))
else:
    STORE = MemoryStore()
    # Each gunicorn worker is a process with its own dict, so a task created through
    # one would be missing in the others: the benchmark's data is seeded at import,
    # identically in every worker (ids 000...001 to the count given).
    for i in range(1, int(os.environ.get("TASKS_SEED", "0")) + 1):
        doc, _ = validate({"title": f"bench task {i}", "description": "a typical task body",
                           "tags": ["bench", "perf"], "priority": 2, "due": "2027-01-01T12:00:00Z"})
        doc["_id"] = ObjectId(f"{i:024x}")
        doc["created"] = doc["updated"] = dt.datetime(2026, 1, 1) + dt.timedelta(milliseconds=i)
        STORE.insert(doc)
