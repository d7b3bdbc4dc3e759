"""The plain pages: the landing page, the Tor Browser guide, and the page that asks the
browser to forget the site."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..rendering import render
from ..state import WebDep

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def landing(request: Request, web: WebDep) -> Response:
    return render(web, request.scope, "landing.html", js=web.landing_js)


@router.get("/tor", response_class=HTMLResponse)
async def tor_guidance(request: Request, web: WebDep) -> Response:
    return render(web, request.scope, "tor.html")


@router.get("/leave", response_class=HTMLResponse)
async def leave(request: Request, web: WebDep) -> Response:
    response = render(web, request.scope, "leave.html")
    # ask the browser to drop anything it kept for this site (secure contexts: .onion
    # in Tor Browser, localhost); the page itself is blank and neutral
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response
