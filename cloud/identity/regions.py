"""Provincial-level divisions of China by their GB/T 2260 codes (pure data).

Used for the address prefix of national ID numbers (GB 11643-1999 section 5.1) and for the province that
licensed an expert. 81, 82 and 83 also head the numbers of residence permits for Hong Kong, Macao and Taiwan
residents (港澳台居民居住证, same checksum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Province:
    """A provincial-level division: two-digit prefix, six-digit GB/T 2260 code and names."""

    prefix: str
    name_zh: str
    name_en: str

    @property
    def code(self) -> str:
        return self.prefix + "0000"


PROVINCES: Final[tuple[Province, ...]] = (
    Province("11", "北京市", "Beijing"), Province("12", "天津市", "Tianjin"), Province("13", "河北省", "Hebei"),
    Province("14", "山西省", "Shanxi"), Province("15", "内蒙古自治区", "Inner Mongolia"),
    Province("21", "辽宁省", "Liaoning"), Province("22", "吉林省", "Jilin"), Province("23", "黑龙江省", "Heilongjiang"),
    Province("31", "上海市", "Shanghai"), Province("32", "江苏省", "Jiangsu"), Province("33", "浙江省", "Zhejiang"),
    Province("34", "安徽省", "Anhui"), Province("35", "福建省", "Fujian"), Province("36", "江西省", "Jiangxi"),
    Province("37", "山东省", "Shandong"), Province("41", "河南省", "Henan"), Province("42", "湖北省", "Hubei"),
    Province("43", "湖南省", "Hunan"), Province("44", "广东省", "Guangdong"),
    Province("45", "广西壮族自治区", "Guangxi"), Province("46", "海南省", "Hainan"),
    Province("50", "重庆市", "Chongqing"),
    Province("51", "四川省", "Sichuan"), Province("52", "贵州省", "Guizhou"), Province("53", "云南省", "Yunnan"),
    Province("54", "西藏自治区", "Tibet"), Province("61", "陕西省", "Shaanxi"), Province("62", "甘肃省", "Gansu"),
    Province("63", "青海省", "Qinghai"), Province("64", "宁夏回族自治区", "Ningxia"),
    Province("65", "新疆维吾尔自治区", "Xinjiang"), Province("71", "台湾省", "Taiwan"),
    Province("81", "香港特别行政区", "Hong Kong"), Province("82", "澳门特别行政区", "Macao"),
)
BY_CODE: Final = {p.code: p for p in PROVINCES}
# Address prefixes a national ID or residence permit number may start with.
ID_PREFIXES: Final = frozenset({p.prefix for p in PROVINCES} | {"83"})


def is_province_code(code: str) -> bool:
    """Whether `code` is the six-digit GB/T 2260 code of a provincial-level division."""
    return code in BY_CODE
