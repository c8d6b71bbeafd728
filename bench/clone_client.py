#!/usr/bin/env python3
"""Fallback for bench/token.sh while `POST /admin/v1/environments/{env}/clients` is not routed:
copies the demo service client (confidential, client_secret_basic, client_credentials) into the
environment ENV_SLUG of the SQLite database in DATA_DIR under a new client ID, and prints
"CLIENT_ID SECRET" (the secret is the demo service's, read from DATA_DIR/demo.txt).

usage: clone_client.py DATA_DIR ENV_SLUG
"""

import random
import re
import sqlite3
import sys

data, slug = sys.argv[1], sys.argv[2]
sid, secret = re.search(r"-u (\S+):(\S+) ", open(f"{data}/demo.txt", encoding="utf-8").read()).groups()
db = sqlite3.connect(f"{data}/portcullis.db", timeout=10)
env_id = db.execute("SELECT id FROM environments WHERE slug = ?", (slug,)).fetchone()[0]
cols = [r[1] for r in db.execute("PRAGMA table_info(clients)")]
row = dict(zip(cols, db.execute("SELECT * FROM clients WHERE id = ?", (sid,)).fetchone()))
prefix, ulid = sid.rsplit("_", 1)
row["id"] = f"{prefix}_{ulid[:10]}" + "".join(random.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(16))
row["env_id"], row["name"] = env_id, "bench svc"
db.execute(f"INSERT INTO clients ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [row[c] for c in cols])
db.commit()
print(row["id"], secret)
