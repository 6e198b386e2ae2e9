"""`python -m bot.cli`: how `yuchi up` starts its workers."""

from bot.cli import main

main()
