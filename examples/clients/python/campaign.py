# CAMPAIGN.ADD and CAMPAIGN.HAS through redis-py's generic command call.
import os

import redis

r = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
added = r.execute_command("CAMPAIGN.ADD", "spring-sale", "user:42")  # 1 if new, 0 if already there
member = r.execute_command("CAMPAIGN.HAS", "spring-sale", "user:42")  # 1 or 0
print(f"added={added} member={member}")
