"""Wagtail, the CMS, as its own docs set it up: ``wagtail start``, the tutorial's blog (an index page and
blog pages with search fields), 32 posts, editors who log in to the admin, and one removed post.

    python benchmarks/realsite/setup_wagtail.py     # into ~/.cache/driftlock-bench/wagtail/

The tutorial's blog index lists every post; here it shows five a page (``?page=``) so readers paginate."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, locust_venv, prose, run, venv, words_in, write_site

NAME = "wagtail"
POSTS = 32
EDITORS = [("editor1", "bluebird-river-42"), ("editor2", "quiet-harbor-77"), ("editor3", "amber-field-19")]

MODELS = """from django.core.paginator import Paginator
from django.db import models
from wagtail.admin.panels import FieldPanel
from wagtail.fields import RichTextField
from wagtail.models import Page
from wagtail.search import index


class BlogIndexPage(Page):
    intro = RichTextField(blank=True)

    content_panels = Page.content_panels + [FieldPanel("intro")]

    def get_context(self, request):
        context = super().get_context(request)
        blogpages = self.get_children().live().order_by("-first_published_at")
        context["blogpages"] = Paginator(blogpages, 5).get_page(request.GET.get("page"))
        return context


class BlogPage(Page):
    date = models.DateField("Post date")
    intro = models.CharField(max_length=250)
    body = RichTextField(blank=True)

    search_fields = Page.search_fields + [index.SearchField("intro"), index.SearchField("body")]

    content_panels = Page.content_panels + [FieldPanel("date"), FieldPanel("intro"), FieldPanel("body")]
"""

INDEX_TEMPLATE = """{% extends "base.html" %}
{% load wagtailcore_tags %}
{% block body_class %}template-blogindexpage{% endblock %}
{% block content %}
    <h1>{{ page.title }}</h1>
    <div class="intro">{{ page.intro|richtext }}</div>
    {% for post in blogpages %}
        {% with post=post.specific %}
            <h2><a href="{% pageurl post %}">{{ post.title }}</a></h2>
            <p>{{ post.intro }}</p>
        {% endwith %}
    {% endfor %}
    {% if blogpages.has_next %}<a href="?page={{ blogpages.next_page_number }}">Older posts</a>{% endif %}
{% endblock %}
"""

PAGE_TEMPLATE = """{% extends "base.html" %}
{% load wagtailcore_tags %}
{% block body_class %}template-blogpage{% endblock %}
{% block content %}
    <h1>{{ page.title }}</h1>
    <p class="meta">{{ page.date }}</p>
    <div class="intro">{{ page.intro }}</div>
    {{ page.body|richtext }}
    <p><a href="{{ page.get_parent.url }}">Return to blog</a></p>
{% endblock %}
"""

BENCH_SETTINGS = """import os

from .production import *  # noqa: F403

SECRET_KEY = "driftlock-realsite-benchmark-only"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
MIDDLEWARE = MIDDLEWARE + ["driftlock.django.DriftlockMiddleware"]  # noqa: F405

DRIFTLOCK = {
    "BASE_URL": os.environ.get("REALSITE_DRIFTLOCK_URL", "http://127.0.0.1:8080"),
    "STREAM_ID": "wagtail",
    "EXCLUDE_PATHS": ["/static/", "/media/"],
    "ASYNC_MODE": True,
}
"""

CONTENT = """
import datetime, json, sys
from django.contrib.auth.models import Group, User
from wagtail.models import Page
from blog.models import BlogIndexPage, BlogPage

posts = json.load(open(sys.argv[1]))
editors = json.load(open(sys.argv[2]))
home = Page.objects.get(depth=2)
index = home.add_child(instance=BlogIndexPage(title="Blog", slug="blog", intro="<p>Notes from the library.</p>"))
day = datetime.date(2026, 1, 1)
for n, (title, text) in enumerate(posts):
    paragraphs = "".join(f"<p>{p}</p>" for p in text.split("\\n\\n") if p.strip())
    post = BlogPage(title=title, slug=f"post-{n + 1}", date=day + datetime.timedelta(days=n),
                    intro=text.split("\\n")[0][:240], body=paragraphs)
    index.add_child(instance=post)
    post.save_revision().publish()
removed = index.get_children().get(slug=f"post-{len(posts)}")
removed.delete()
group = Group.objects.get(name="Editors")
for name, password in editors:
    user = User.objects.create_user(name, f"{name}@example.com", password)
    user.groups.add(group)
User.objects.create_superuser("admin", "admin@example.com", "correct-horse-battery-9")
"""


def main() -> None:
    python = venv(NAME, "wagtail>=6", "gunicorn>=22") / "bin" / "python"
    locust_venv()
    root = CACHE / NAME / "site"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    wagtail = str(python.parent / "wagtail")
    run([wagtail, "start", "mysite", str(root)])
    manage = [str(python), "manage.py"]
    run([*manage, "startapp", "blog"], cwd=root)
    (root / "blog" / "models.py").write_text(MODELS)
    templates = root / "blog" / "templates" / "blog"
    templates.mkdir(parents=True)
    (templates / "blog_index_page.html").write_text(INDEX_TEMPLATE)
    (templates / "blog_page.html").write_text(PAGE_TEMPLATE)
    base = root / "mysite" / "settings" / "base.py"
    base.write_text(base.read_text().replace("INSTALLED_APPS = [\n", 'INSTALLED_APPS = [\n    "blog",\n', 1))
    (root / "mysite" / "settings" / "bench.py").write_text(BENCH_SETTINGS)
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings.bench", "PATH": str(python.parent) + ":/usr/bin:/bin"}
    run([*manage, "makemigrations", "blog"], cwd=root, env=env)
    run([*manage, "migrate"], cwd=root, env=env)
    run([*manage, "collectstatic", "--noinput"], cwd=root, env=env)
    posts = prose(POSTS)
    (root / "posts.json").write_text(__import__("json").dumps(posts))
    (root / "editors.json").write_text(__import__("json").dumps(EDITORS))
    (root / "content.py").write_text(CONTENT)
    run(
        [
            *manage,
            "shell",
            "-c",
            "import sys; sys.argv = ['', 'posts.json', 'editors.json']; exec(open('content.py').read())",
        ],
        cwd=root,
        env=env,
    )
    run([*manage, "update_index"], cwd=root, env=env)
    live = [f"/blog/post-{n + 1}/" for n in range(len(posts) - 1)]
    write_site(
        CACHE / NAME / "site.json",
        {
            "app": NAME,
            "project": str(root),
            "wsgi": "mysite.wsgi:application",
            "settings": "mysite.settings.bench",
            "pages": ["/", "/blog/", *live],
            "paginated": [{"path": "/blog/", "param": "page", "pages": (len(live) + 4) // 5}],
            "search": {"path": "/search/", "param": "query", "page_param": "page"},
            "words": words_in([text for _, text in posts]),
            "login": {
                "path": "/admin/login/",
                "user_field": "username",
                "password_field": "password",
                "next": "/admin/",
            },
            "logout": {"path": "/admin/logout/"},
            "member_pages": [
                "/admin/",
                "/admin/pages/",
                "/admin/pages/3/",
                "/admin/pages/4/",
                "/admin/images/",
                "/admin/documents/",
                "/admin/pages/search/?q=file",
            ],
            "member_post": [],
            "users": EDITORS,
            "removed": [f"/blog/post-{len(posts)}/", "/blog/draft-notes/"],
            "login_failed": "Your username and password didn",
            "attack_login": "admin",
            "sqlmap_url": "/search/?query=file",
            "sqlmap_param": "query",
        },
    )
    print(f"wagtail ready: {root}")


if __name__ == "__main__":
    main()
