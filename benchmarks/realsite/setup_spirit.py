"""Spirit, the forum, as its own docs set it up: ``spirit startproject``, ``spiritinstall``, production
settings in a local module beside ``prod.py`` (SQLite here), then categories, topics and replies written
through Spirit's own forms, members who log in, and one removed topic.

    python benchmarks/realsite/setup_spirit.py     # into ~/.cache/driftlock-bench/spirit/

This application is HELD OUT: its recordings are reported, never used for tuning."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, locust_venv, prose, run, venv, words_in, write_site

NAME = "spirit"
TOPICS = 30
MEMBERS = [(f"member{n}", f"forum-pass-{n * 37 + 11}") for n in range(1, 13)]

BENCH_SETTINGS = """import os

from .prod import *  # noqa: F403

SECRET_KEY = "driftlock-realsite-benchmark-only"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ST_SITE_URL = "http://127.0.0.1/"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(BASE_DIR, "db.sqlite3")}}  # noqa: F405
MIDDLEWARE = MIDDLEWARE + ["driftlock.django.DriftlockMiddleware"]  # noqa: F405

DRIFTLOCK = {
    "BASE_URL": os.environ.get("REALSITE_DRIFTLOCK_URL", "http://127.0.0.1:8080"),
    "STREAM_ID": "spirit",
    "EXCLUDE_PATHS": ["/static/", "/media/"],
    "ASYNC_MODE": True,
}
"""

CONTENT = """
import json, random, sys
from django.contrib.auth import get_user_model
from spirit.category.models import Category
from spirit.comment.forms import CommentForm
from spirit.comment.utils import comment_posted
from spirit.topic.forms import TopicForm
from spirit.topic.models import Topic

random.seed(7)
posts = json.load(open(sys.argv[1]))
members = json.load(open(sys.argv[2]))
User = get_user_model()
admin = User.objects.create_superuser("admin", "admin@example.com", "correct-horse-battery-9")
admin.st.is_administrator = True
admin.st.is_moderator = True
admin.st.is_verified = True
admin.st.save()
users = []
for name, password in members:
    user = User.objects.create_user(name, f"{name}@example.com", password)
    user.st.is_verified = True
    user.st.save()
    users.append(user)
categories = [Category.objects.create(title=t, description=f"About {t.lower()}")
              for t in ("General", "Standard library", "Networking", "Help")]
for n, (title, text) in enumerate(posts):
    author = users[n % len(users)]
    category = categories[n % len(categories)]
    form = TopicForm(user=author, data={"title": title, "category": category.pk})
    paragraphs = [p for p in text.split("\\n\\n") if p.strip()]
    cform = CommentForm(user=author, data={"comment": paragraphs[0]})
    assert form.is_valid() and cform.is_valid(), (form.errors, cform.errors)
    topic = form.save()
    cform.topic = topic
    comment_posted(comment=cform.save(), mentions=cform.mentions)
    for reply in paragraphs[1:4] or ["Thanks, that helped."]:
        replier = random.choice(users)
        rform = CommentForm(user=replier, topic=topic, data={"comment": reply})
        assert rform.is_valid(), rform.errors
        comment_posted(comment=rform.save(), mentions=rform.mentions)
removed = Topic.objects.order_by("-pk").first()
print(json.dumps({"removed": f"/topic/{removed.pk}/{removed.slug}/",
                  "topics": [[t.pk, t.slug] for t in Topic.objects.exclude(pk=removed.pk).order_by("pk")],
                  "categories": [[c.pk, c.slug] for c in categories]}))
removed.delete()
"""


def main() -> None:
    python = venv(NAME, "django-spirit>=0.14", "gunicorn>=22") / "bin" / "python"
    locust_venv()
    root = CACHE / NAME / "forum"
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    env = {"DJANGO_SETTINGS_MODULE": "forum.settings.bench", "PATH": str(python.parent) + ":/usr/bin:/bin"}
    run([str(python.parent / "spirit"), "startproject", "forum"], cwd=root.parent, env={"PATH": env["PATH"]})
    settings = root / "forum" / "settings"
    (settings / "bench.py").write_text(BENCH_SETTINGS)
    manage = [str(python), "manage.py"]
    run([*manage, "spiritinstall"], cwd=root, env=env)
    posts = prose(TOPICS + 1)
    (root / "posts.json").write_text(json.dumps(posts))
    (root / "members.json").write_text(json.dumps(MEMBERS))
    (root / "content.py").write_text(CONTENT)
    made = run(
        [
            *manage,
            "shell",
            "-c",
            "import sys; sys.argv = ['', 'posts.json', 'members.json']; exec(open('content.py').read())",
        ],
        cwd=root,
        env=env,
    )
    content = json.loads(made.strip().splitlines()[-1])
    run([*manage, "rebuild_index", "--noinput"], cwd=root, env=env)
    topics = [f"/topic/{pk}/{slug}/" for pk, slug in content["topics"]]
    categories = [f"/category/{pk}/{slug}/" for pk, slug in content["categories"]]
    write_site(
        CACHE / NAME / "site.json",
        {
            "app": NAME,
            "package": "django-spirit",
            "project": str(root),
            "wsgi": "forum.wsgi:application",
            "settings": "forum.settings.bench",
            "pages": ["/", *topics[:10], "/category/", *categories, *topics[10:], "/topic/active/"],
            "paginated": [{"path": "/topic/active/", "param": "page", "pages": 2}],
            "search": {"path": "/search/", "param": "q", "page_param": "page"},
            "words": words_in([text for _, text in posts]),
            "login": {"path": "/user/login/", "user_field": "username", "password_field": "password", "next": "/"},
            "logout": {"path": "/user/logout/"},
            "member_pages": [
                "/user/",
                "/topic/unread/",
                "/topic/notification/",
                "/topic/private/",
                "/user/menu/",
                *topics[:6],
            ],
            "member_post": [
                {"form": topic, "path": f"/comment/{pk}/publish/", "fields": {"comment": "{words}, thanks"}}
                for topic, (pk, _slug) in zip(topics[:8], content["topics"][:8], strict=True)
            ],
            "users": MEMBERS,
            "removed": [content["removed"], "/topic/9999/gone/"],
            "login_failed": "The password is not valid",
            "attack_login": "admin",
            "attack_users": "/usr/share/dirb/wordlists/others/names.txt",  # login is rate-limited per name
            "sqlmap_url": "/topic/active/?page=2",
            "sqlmap_param": "page",
            "weights": {"reader": 10, "searcher": 0, "member": 5},  # search is for members
        },
    )
    print(f"spirit ready: {root}")


if __name__ == "__main__":
    main()
