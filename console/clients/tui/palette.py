"""The console's actions in the command palette (ctrl+p): only those allowed right now."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from console.clients.tui.keys import KEY_NAMES, KEYS


class FoldwatchCommands(Provider):
    """The console's actions in the command palette (only those allowed right now)."""

    def _commands(self) -> list[tuple[str, str, str]]:
        app = self.app
        return [(desc, action, KEY_NAMES.get(key, key)) for key, action, _, desc in KEYS
                if app.why_not(action) is None]

    async def discover(self) -> Hits:
        for desc, action, key in self._commands():
            yield DiscoveryHit(desc, partial(self.app.run_action, action), help=f"key: {key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for desc, action, key in self._commands():
            score = matcher.match(desc)
            if score > 0:
                yield Hit(score, matcher.highlight(desc), partial(self.app.run_action, action),
                          help=f"key: {key}")
