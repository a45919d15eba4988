"""Chinese personal names and their DICOM Person Name (PN) encoding.

A PN value has up to three component groups separated by '=': alphabetic, ideographic and phonetic
(PS3.5 6.2.1.2). Chinese sites using UTF-8 ('ISO_IR 192') conventionally write the Hanyu Pinyin
romanisation in the alphabetic group and the characters in the ideographic group: 'Zhang^Wei=张^伟'.
When a character has no known romanisation the characters go alone, which ISO_IR 192 permits.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.modality.errors import InvalidPatientNameError

# Compound (two-character) family names are checked first so that 欧阳修 splits as 欧阳 + 修.
COMPOUND_FAMILY_NAMES: dict[str, str] = {
    "欧阳": "Ouyang", "司马": "Sima", "诸葛": "Zhuge", "上官": "Shangguan", "东方": "Dongfang",
    "皇甫": "Huangfu", "慕容": "Murong", "令狐": "Linghu",
}

# The most common single-character family names in mainland China, with their Pinyin in family-name
# reading (e.g. 曾 is Zeng, not Ceng). 吕 is written 'Lyu' as on PRC passports (GB/T 28039-2011).
FAMILY_NAMES: dict[str, str] = {
    "王": "Wang", "李": "Li", "张": "Zhang", "刘": "Liu", "陈": "Chen", "杨": "Yang", "黄": "Huang",
    "赵": "Zhao", "吴": "Wu", "周": "Zhou", "徐": "Xu", "孙": "Sun", "马": "Ma", "朱": "Zhu", "胡": "Hu",
    "郭": "Guo", "何": "He", "高": "Gao", "林": "Lin", "罗": "Luo", "郑": "Zheng", "梁": "Liang",
    "谢": "Xie", "宋": "Song", "唐": "Tang", "许": "Xu", "韩": "Han", "冯": "Feng", "邓": "Deng",
    "曹": "Cao", "彭": "Peng", "曾": "Zeng", "肖": "Xiao", "田": "Tian", "董": "Dong", "袁": "Yuan",
    "潘": "Pan", "于": "Yu", "蒋": "Jiang", "蔡": "Cai", "余": "Yu", "杜": "Du", "叶": "Ye", "程": "Cheng",
    "苏": "Su", "魏": "Wei", "吕": "Lyu", "丁": "Ding", "任": "Ren", "沈": "Shen", "姚": "Yao", "卢": "Lu",
    "姜": "Jiang", "崔": "Cui", "钟": "Zhong", "谭": "Tan", "陆": "Lu", "汪": "Wang", "范": "Fan",
    "金": "Jin", "石": "Shi", "廖": "Liao", "贾": "Jia", "夏": "Xia", "韦": "Wei", "付": "Fu", "方": "Fang",
    "白": "Bai", "邹": "Zou", "孟": "Meng", "熊": "Xiong", "秦": "Qin", "邱": "Qiu", "江": "Jiang",
    "尹": "Yin", "薛": "Xue", "闫": "Yan", "段": "Duan", "雷": "Lei", "侯": "Hou", "龙": "Long", "史": "Shi",
    "陶": "Tao", "黎": "Li", "贺": "He", "顾": "Gu", "毛": "Mao", "郝": "Hao", "龚": "Gong", "邵": "Shao",
    "万": "Wan", "钱": "Qian", "严": "Yan", "覃": "Qin", "武": "Wu", "戴": "Dai", "莫": "Mo", "孔": "Kong",
    "向": "Xiang", "汤": "Tang",
}

# Characters common in given names, with their usual given-name reading.
GIVEN_NAME_SYLLABLES: dict[str, str] = {
    "伟": "wei", "芳": "fang", "娜": "na", "秀": "xiu", "英": "ying", "敏": "min", "静": "jing", "丽": "li",
    "强": "qiang", "磊": "lei", "军": "jun", "洋": "yang", "勇": "yong", "艳": "yan", "杰": "jie",
    "娟": "juan", "涛": "tao", "明": "ming", "超": "chao", "兰": "lan", "霞": "xia", "平": "ping",
    "刚": "gang", "桂": "gui", "建": "jian", "华": "hua", "国": "guo", "志": "zhi", "玉": "yu", "淑": "shu",
    "珍": "zhen", "海": "hai", "燕": "yan", "文": "wen", "红": "hong", "凤": "feng", "德": "de", "春": "chun",
    "梅": "mei", "小": "xiao", "婷": "ting", "浩": "hao", "宇": "yu", "欣": "xin", "怡": "yi", "子": "zi",
    "涵": "han", "梓": "zi", "轩": "xuan", "晨": "chen", "阳": "yang", "东": "dong", "林": "lin",
    "荣": "rong", "生": "sheng", "福": "fu", "安": "an", "永": "yong", "庆": "qing", "光": "guang",
    "秋": "qiu", "菊": "ju", "莲": "lian", "慧": "hui", "佳": "jia", "琳": "lin", "鹏": "peng", "飞": "fei",
    "斌": "bin", "波": "bo", "辉": "hui", "宏": "hong", "昊": "hao", "然": "ran", "思": "si", "雨": "yu",
    "嘉": "jia", "怀": "huai", "仁": "ren", "成": "cheng", "良": "liang", "芬": "fen", "萍": "ping",
    "翠": "cui", "花": "hua", "友": "you", "才": "cai", "发": "fa", "山": "shan", "水": "shui", "恩": "en",
    "爱": "ai", "欧": "ou",
}


@dataclass(frozen=True)
class ChineseName:
    """A person's name in characters, with optional Hanyu Pinyin for the family and given names."""

    family: str
    given: str
    family_pinyin: str | None = None
    given_pinyin: str | None = None

    @property
    def hanzi(self) -> str:
        """The name as written in China: family name first, no separator (张伟)."""
        return f"{self.family}{self.given}"

    def to_dicom(self) -> str:
        """The PN value: 'Zhang^Wei=张^伟' when romanisation is known, else '张^伟' (PS3.5 6.2.1.2)."""
        ideographic = f"{self.family}^{self.given}"
        if self.family_pinyin and self.given_pinyin:
            return f"{self.family_pinyin}^{self.given_pinyin}={ideographic}"
        return ideographic


def romanise_given_name(given: str) -> str | None:
    """Pinyin for a given name ('秀英' -> 'Xiuying'), or None when a character is not in our table.

    Syllables run together; an apostrophe separates a syllable starting with a, o or e from the one
    before it so that the reading stays unambiguous (Xi'an is not Xian), as the Pinyin rules require.
    """
    syllables: list[str] = []
    for char in given:
        syllable = GIVEN_NAME_SYLLABLES.get(char)
        if syllable is None:
            return None
        syllables.append(syllable)
    if not syllables:
        return None
    text = syllables[0]
    for syllable in syllables[1:]:
        text += ("'" if syllable[0] in "aoe" else "") + syllable
    return text[0].upper() + text[1:]


def parse_chinese_name(text: str) -> ChineseName:
    """Split '张伟', '欧阳修', '张 伟' or '张^伟' into family and given names and romanise them where we can."""
    cleaned = "^".join(text.split())  # '张 伟' is written with a space as often as with a caret
    if "=" in cleaned:
        raise InvalidPatientNameError("give the name in characters only, e.g. 张伟 or 张^伟")
    if "^" in cleaned:
        family, _, given = cleaned.partition("^")
    elif cleaned[:2] in COMPOUND_FAMILY_NAMES:
        family, given = cleaned[:2], cleaned[2:]
    else:
        family, given = cleaned[:1], cleaned[1:]
    family, given = family.strip(), given.strip()
    if not family or not given or "^" in given:
        raise InvalidPatientNameError("a name needs a family name and a given name, e.g. 张伟")
    if any(char.isdigit() for char in family + given):
        raise InvalidPatientNameError("a name may not contain digits")
    family_pinyin = COMPOUND_FAMILY_NAMES.get(family) or FAMILY_NAMES.get(family)
    return ChineseName(family, given, family_pinyin, romanise_given_name(given))
