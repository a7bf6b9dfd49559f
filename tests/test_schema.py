"""Tool schemas from Python functions equal LangChain's `convert_to_openai_tool` for the same functions."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, Optional

import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from llmclient.tools import FunctionTool, tool_from_model
from llmclient.tools.schema import parse_docstring


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    """A postal address."""

    street: str = Field(description="Street and number")
    city: str
    zip_code: str | None = None


class Order(BaseModel):
    """An order to place."""

    items: list[str]
    address: Address
    express: bool = False


def plain(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def with_defaults(query: str, limit: int = 10, exact: bool = False, score: float = 0.5) -> list[str]:
    """Search the catalogue.

    Args:
        query: Words to look for.
        limit: At most this many results.
        exact: Match whole words only.
        score: Minimum relevance.
    """
    return []


def optional_args(name: Optional[str] = None, note: str | None = None) -> str:  # noqa: UP045
    """Greet someone.

    Args:
        name: Who to greet; everyone when missing.
        note: A line to add.
    """
    return ""


def literal_arg(unit: Literal["c", "f"], city: str) -> str:
    """Current temperature.

    Args:
        unit: Celsius or Fahrenheit.
        city: Where.
    """
    return ""


def enum_arg(colour: Colour) -> str:
    """Paint the wall.

    Args:
        colour: The paint.
    """
    return ""


def collections(tags: list[str], weights: dict[str, float], matrix: list[list[int]]) -> None:
    """Store tagged data.

    Args:
        tags: Labels.
        weights: Weight per label.
        matrix: Rows of numbers.
    """


def nested_model(order: Order, note: str = "") -> str:
    """Place an order.

    Args:
        order: What to send where.
        note: For the courier.
    """
    return ""


def annotated(
    city: Annotated[str, Field(description="City name")],
    days: Annotated[int, "How many days ahead"] = 1,
) -> str:
    """Forecast."""
    return ""


async def async_tool(url: str, timeout: float = 5.0) -> str:
    """Fetch a page.

    Args:
        url: The address.
        timeout: Seconds to wait.
    """
    return ""


def multi_paragraph(x: int) -> int:
    """First paragraph of the description.

    Second paragraph, which LangChain keeps too.

    Args:
        x: A number.

    Returns:
        The number.
    """
    return x


def no_docstring(a: str, b: list[int] | None = None) -> None:
    pass


def any_and_tuple(value: Any, pair: tuple[int, str]) -> None:
    """Take anything.

    Args:
        value: Whatever.
        pair: Two things.
    """


FUNCTIONS = [
    plain,
    with_defaults,
    optional_args,
    literal_arg,
    enum_arg,
    collections,
    nested_model,
    annotated,
    async_tool,
    multi_paragraph,
    no_docstring,
    any_and_tuple,
]


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_schema_equals_langchains(function: Any) -> None:
    assert FunctionTool(function).tool.to_openai() == convert_to_openai_tool(function)


def test_models_equal_langchains_too() -> None:
    assert tool_from_model(Order).to_openai() == convert_to_openai_tool(Order)


def test_docstring_styles() -> None:
    google = parse_docstring(
        """Summary line.

        Args:
            a (int): First, which wraps
                onto a second line.
            b: Second.
        """
    )
    assert google == ("Summary line.", {"a": "First, which wraps onto a second line.", "b": "Second."})
    numpy = parse_docstring(
        """Summary line.

        Parameters
        ----------
        a : int
            First.
        b : str
            Second, which wraps
            here.

        Returns
        -------
        int
        """
    )
    assert numpy == ("Summary line.", {"a": "First.", "b": "Second, which wraps here."})
    sphinx = parse_docstring(
        """Summary line.

        :param a: First.
        :param str b: Second.
        :returns: nothing
        """
    )
    assert sphinx == ("Summary line.", {"a": "First.", "b": "Second."})
    assert parse_docstring(None) == ("", {})


def test_numpy_and_sphinx_descriptions_reach_the_schema() -> None:
    def numpy_style(city: str, days: int = 1) -> str:
        """Forecast.

        Parameters
        ----------
        city : str
            City name.
        days : int
            Days ahead.
        """
        return ""

    def sphinx_style(city: str) -> str:
        """Forecast.

        :param city: City name.
        """
        return ""

    properties = FunctionTool(numpy_style).tool.parameters["properties"]
    assert properties["city"]["description"] == "City name."
    assert properties["days"]["description"] == "Days ahead."
    assert FunctionTool(sphinx_style).tool.parameters["properties"]["city"]["description"] == "City name."
    assert FunctionTool(numpy_style).tool.description == "Forecast."
