"""Visitors of a real site, in sessions: readers, searchers and members (see README.md).

What the site offers (pages by popularity, search, words taken from its pages, login, member pages) comes
from the JSON file named by ``REALSITE_SITE``, written by the site's set-up script."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

from locust import HttpUser, between, task

SITE: dict[str, Any] = json.loads(Path(os.environ["REALSITE_SITE"]).read_text(encoding="utf-8"))
PAGES: list[str] = SITE["pages"]
POPULARITY = [1.0 / (rank + 1) ** 0.9 for rank in range(len(PAGES))]  # Zipf-like: the home page first
WORDS: list[str] = SITE["words"]
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
WEIGHTS = {"reader": 10, "searcher": 4, "member": 2, **SITE.get("weights", {})}  # a site may change the mix
WAIT = float(os.environ.get("REALSITE_WAIT", "1.2"))  # mean think time, seconds


def a_page() -> str:
    return random.choices(PAGES, POPULARITY)[0]


def some_words() -> str:
    n = random.choices([1, 2, 3], [6, 3, 1])[0]
    return " ".join(random.choice(WORDS) for _ in range(n))


class Reader(HttpUser):
    """Browses pages by popularity, follows a listing to its next pages, sometimes lands on a dead link."""

    weight = WEIGHTS["reader"]
    wait_time = between(WAIT * 0.3, WAIT * 1.7)

    @task(10)
    def page(self) -> None:
        self.client.get(a_page(), name="page")

    @task(2)
    def listing(self) -> None:
        if not SITE.get("paginated"):
            return
        listing = random.choice(SITE["paginated"])
        self.client.get(listing["path"], name="listing")
        for number in range(2, random.randint(2, listing["pages"]) + 1):
            self.client.get(listing["path"], params={listing["param"]: number}, name="listing page")

    @task(1)
    def dead_link(self) -> None:
        if SITE.get("removed") and random.random() < 0.3:
            with self.client.get(random.choice(SITE["removed"]), name="removed", catch_response=True) as r:
                r.success()


class Searcher(HttpUser):
    """Searches with words from the site's own pages, looks at page 2 sometimes, opens a result."""

    weight = WEIGHTS["searcher"]
    wait_time = between(WAIT * 0.5, WAIT * 2.5)

    @task
    def search(self) -> None:
        search = SITE["search"]
        words = some_words()
        self.client.get(search["path"], params={search["param"]: words}, name="search")
        if random.random() < 0.25:
            self.client.get(search["path"], params={search["param"]: words, search["page_param"]: 2}, name="search")
        if random.random() < 0.6:
            self.client.get(a_page(), name="page")


class Member(HttpUser):
    """Logs in through the site's form (CSRF token from the form), sometimes mistyping the password first,
    does a member's things for a while, logs out, and comes back later."""

    weight = WEIGHTS["member"]
    wait_time = between(WAIT * 0.5, WAIT * 2.5)

    def on_start(self) -> None:
        self.account = random.choice(SITE["users"])
        self.actions = 0
        self.logged_in = False

    def _token(self, path: str) -> str | None:
        response = self.client.get(path, name=f"{path} (form)")
        found = TOKEN.search(response.text or "")
        return found.group(1) if found else self.client.cookies.get("csrftoken")

    def login(self) -> None:
        login = SITE["login"]
        if random.random() < 0.12:  # a mistyped password
            token = self._token(login["path"])
            with self.client.post(
                login["path"],
                data={
                    "csrfmiddlewaretoken": token,
                    login["user_field"]: self.account[0],
                    login["password_field"]: self.account[1] + "x",
                },
                name="login (mistyped)",
                catch_response=True,
            ) as r:
                r.success()
        token = self._token(login["path"])
        self.client.post(
            login["path"],
            data={
                "csrfmiddlewaretoken": token,
                login["user_field"]: self.account[0],
                login["password_field"]: self.account[1],
                "next": login.get("next", "/"),
            },
            name="login",
        )
        self.logged_in = True
        self.actions = random.randint(3, 12)

    def logout(self) -> None:
        logout = SITE["logout"]
        token = self.client.cookies.get("csrftoken")
        self.client.post(logout["path"], data={"csrfmiddlewaretoken": token}, name="logout")
        self.logged_in = False
        self.client.cookies.clear()

    @task
    def session(self) -> None:
        if not self.logged_in:
            if random.random() < 0.5:  # browses a little before logging in
                self.client.get(a_page(), name="page")
                return
            self.login()
            return
        if self.actions <= 0:
            self.logout()
            return
        self.actions -= 1
        roll = random.random()
        if roll < 0.55:
            self.client.get(random.choice(SITE["member_pages"]), name="member page")
        elif roll < 0.75 and SITE.get("member_post"):
            self.post()
        elif roll < 0.9:
            self.client.get(a_page(), name="page")
        else:
            search = SITE["search"]
            self.client.get(search["path"], params={search["param"]: some_words()}, name="search")

    def post(self) -> None:
        """A member's write: a reply, an edit, whatever the site's ``member_post`` says."""
        action = random.choice(SITE["member_post"])
        token = self._token(action["form"])
        fields = {k: v.replace("{words}", some_words()) for k, v in action["fields"].items()}
        with self.client.post(
            action["path"], data={"csrfmiddlewaretoken": token, **fields}, name="member post", catch_response=True
        ) as r:
            if r.status_code < 500:
                r.success()


if not WEIGHTS["searcher"]:  # a site whose search is for members only: members search (see Member.session)
    del Searcher
