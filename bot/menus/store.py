"""The menus staff edit (nothing reaches the platform until bot.menus.publish)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.models import Menu, utcnow
from bot.menus.spec import MenuIn, check_buttons


class MenuInvalid(ValueError):
    """A 422: ``fields`` maps each bad field (``buttons.0.name``) to what is wrong."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))


def _check(session: Session, data: MenuIn, menu_id: int | None = None) -> None:
    problems = check_buttons(data.buttons)
    others = sa.select(Menu.id).where(
        Menu.tag.is_(None) if data.tag is None else Menu.tag == data.tag
    )
    if menu_id is not None:
        others = others.where(Menu.id != menu_id)
    taken = session.execute(others).scalar()
    if taken is not None:
        problems["tag"] = (
            f"menu {taken} is the default menu already"
            if data.tag is None
            else f"menu {taken} is this tag's menu already"
        )
    if problems:
        raise MenuInvalid(problems)


def list_menus(session: Session) -> list[Menu]:
    """The default menu first, then conditional menus in the order they are matched."""
    return list(
        session.execute(
            sa.select(Menu).order_by(Menu.tag.is_not(None), Menu.position, Menu.id)
        ).scalars()
    )


def create(session: Session, data: MenuIn) -> Menu:
    """Store and commit a menu; MenuInvalid names each problem."""
    _check(session, data)
    row = Menu(name=data.name, tag=data.tag, position=data.position, buttons=data.buttons)
    session.add(row)
    session.commit()
    return row


def update(session: Session, row: Menu, data: MenuIn) -> Menu:
    _check(session, data, row.id)
    row.name, row.tag, row.position, row.buttons = data.name, data.tag, data.position, data.buttons
    row.updated_at = utcnow()
    session.add(row)
    session.commit()
    return row


def delete(session: Session, row: Menu) -> None:
    session.delete(row)
    session.commit()


def menu_json(row: Menu) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kind": "default" if row.tag is None else "conditional",
        "tag": row.tag,
        "position": row.position,
        "buttons": row.buttons,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
