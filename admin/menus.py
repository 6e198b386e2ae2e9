"""/api/menus: the Official Account's default and conditional menus as data, published with
one call (``POST /api/menus/publish``); each publish is a version clicks are stamped with."""

from __future__ import annotations

from collections.abc import Callable

from flask import g, jsonify
from flask.typing import ResponseReturnValue

from admin.common import Invalid, api_blueprint, end_reads, error, int_arg, settings, validated
from admin.openapi import described
from bot.core.models import Menu
from bot.menus import publish, store
from bot.menus.spec import MenuIn

bp = api_blueprint("menus", __name__)


def _menu(menu_id: int) -> Menu | None:
    return g.session.get(Menu, menu_id)


def _saved(fn: Callable[..., Menu], *args: object) -> Menu:
    """A store function's row, or Invalid (422) naming each problem."""
    try:
        return fn(g.session, *args)
    except store.MenuInvalid as exc:
        raise Invalid("invalid menu", exc.fields) from None


@bp.get("/menus")
@described("menus", "List the menus (the default one and those by tag)")
def list_menus() -> ResponseReturnValue:
    rows = store.list_menus(g.session)
    live = next((v for v in publish.versions(g.session) if v.status == "published"), None)
    return jsonify(
        menus=[store.menu_json(r) for r in rows],
        live_version=None if live is None else live.id,
    )


@bp.post("/menus")
@described(
    "menus", "Save a menu (422 names the button path)", json=MenuIn, status=201, errors=(409,)
)
def create_menu() -> ResponseReturnValue:
    data = validated(MenuIn, "menu")
    row = _saved(store.create, data)
    return jsonify(store.menu_json(row)), 201


@bp.get("/menus/<id:menu_id>")
@described("menus", "One menu", errors=(404,))
def get_menu(menu_id: int) -> ResponseReturnValue:
    row = _menu(menu_id)
    if row is None:
        return error(404, f"no menu {menu_id}")
    return jsonify(store.menu_json(row))


@bp.put("/menus/<id:menu_id>")
@described("menus", "Change a menu", json=MenuIn, errors=(404, 409))
def update_menu(menu_id: int) -> ResponseReturnValue:
    row = _menu(menu_id)
    if row is None:
        return error(404, f"no menu {menu_id}")
    data = validated(MenuIn, "menu")
    return jsonify(store.menu_json(_saved(store.update, row, data)))


@bp.delete("/menus/<id:menu_id>")
@described("menus", "Delete a menu", status=204, errors=(404,))
def delete_menu(menu_id: int) -> ResponseReturnValue:
    row = _menu(menu_id)
    if row is None:
        return error(404, f"no menu {menu_id}")
    store.delete(g.session, row)
    return "", 204


@bp.post("/menus/publish")
@described("menus", "Publish every menu to the Official Account in one call", errors=(409, 502))
def publish_menus() -> ResponseReturnValue:
    """Every menu onto the platform; 201 with the new version, 422 naming what the platform
    would refuse (nothing sent), 409 while another publish runs, 502 with the platform's error
    (a failed version stored)."""
    try:
        version = publish.publish(settings(), g.session)
    except store.MenuInvalid as exc:
        raise Invalid("the menus cannot be published", exc.fields) from None
    except publish.PublishBusy as exc:
        return error(409, str(exc))
    except publish.PublishFailed as exc:
        end_reads()
        return error(
            502,
            "the platform refused the menus",
            errcode=exc.errcode,
            errmsg=exc.errmsg,
            version=exc.version_id,
        )
    return jsonify(publish.version_json(version)), 201


@bp.get("/menus/versions")
@described("menus", "The published menu versions, newest first")
def list_versions() -> ResponseReturnValue:
    limit = int_arg("limit", 20, 1, 200) or 20
    return jsonify(versions=[publish.version_json(v) for v in publish.versions(g.session, limit)])
