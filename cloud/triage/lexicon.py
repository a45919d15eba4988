"""The pre-consultation triage lexicon as data: symptoms (zh-CN and en terms) -> specialties, red flags ->
urgency, and the follow-up questions each symptom calls for.

Specialty codes are those of the `specialties` table (migration 0004, after the NHC 医疗机构诊疗科目名录).
Red flags follow common emergency triage discriminators (Manchester Triage System "red flags"; the Chinese
急诊预检分诊专家共识 2018): chest pain with sweating, focal weakness, altered consciousness, haematemesis...
Each flag needs all of its symptoms present and not negated.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Urgency(enum.StrEnum):
    """How soon the patient needs the expert; the order is the member order."""

    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return list(Urgency).index(self)


class Language(enum.StrEnum):
    """The languages triage reads and answers in."""

    ZH = "zh"
    EN = "en"


@dataclass(frozen=True, slots=True)
class Question:
    """A follow-up question in both languages."""

    zh: str
    en: str

    def text(self, language: Language) -> str:
        return self.zh if language is Language.ZH else self.en


@dataclass(frozen=True, slots=True)
class Symptom:
    """A symptom: its terms in each language, how strongly it points to each specialty, its questions."""

    id: str
    zh: tuple[str, ...]
    en: tuple[str, ...]
    specialties: Mapping[str, float]
    questions: tuple[Question, ...] = ()


@dataclass(frozen=True, slots=True)
class RedFlag:
    """A finding that raises urgency: all `requires` symptoms present (and, with `max_onset_hours`, a stated
    onset no longer ago than that)."""

    id: str
    requires: frozenset[str]
    urgency: Urgency
    label_zh: str
    label_en: str
    boost: Mapping[str, float] = field(default_factory=dict)
    max_onset_hours: float | None = None

    def label(self, language: Language) -> str:
        return self.label_zh if language is Language.ZH else self.label_en


def _q(zh: str, en: str) -> Question:
    return Question(zh, en)


_ONSET_Q = _q("症状是什么时候开始的？是突然发生还是逐渐加重？", "When did the symptoms start? Suddenly or gradually?")
ONSET_QUESTION = _ONSET_Q

_SYMPTOMS: tuple[Symptom, ...] = (
    Symptom("chest_pain", ("胸痛", "胸口痛", "胸口疼", "胸部疼痛", "胸部不适", "心前区疼痛", "心前区痛", "心口痛",
                           "胸骨后疼痛", "胸闷痛"),
            ("chest pain", "chest pains", "pain in the chest", "angina", "chest discomfort"),
            {"cardiology": 1.0, "emergency": 0.4, "respiratory": 0.3},
            (_q("疼痛是压榨样、紧缩样还是刺痛？", "Is the pain crushing, tight or sharp?"),
             _q("疼痛是否放射至左臂、下颌或背部？", "Does the pain spread to the left arm, jaw or back?"),
             _q("每次疼痛持续多久？休息后能否缓解？", "How long does each episode last, and does rest relieve it?"),
             _q("既往有无高血压、糖尿病、冠心病或吸烟史？",
                "Any history of hypertension, diabetes, coronary disease or smoking?"))),
    Symptom("chest_tightness", ("胸闷", "胸部压迫感", "憋闷"), ("chest tightness", "tight chest", "chest pressure"),
            {"cardiology": 0.6, "respiratory": 0.5},
            (_q("胸闷与活动有关吗？", "Is the tightness related to exertion?"),)),
    Symptom("diaphoresis", ("大汗淋漓", "大汗", "出冷汗", "冷汗", "出汗多", "多汗"),
            ("sweating", "sweaty", "diaphoresis", "cold sweat", "cold sweats", "clammy"),
            {"cardiology": 0.3, "endocrinology": 0.1},
            (_q("出汗时是否伴有面色苍白或四肢湿冷？",
                "Is the sweating accompanied by pallor or cold, clammy limbs?"),)),
    Symptom("palpitations", ("心悸", "心慌", "心跳快", "心跳加快", "心跳不齐"),
            ("palpitations", "palpitation", "racing heart", "irregular heartbeat", "heart racing"),
            {"cardiology": 1.0},
            (_q("心慌是持续性的还是阵发性的？", "Are the palpitations constant or do they come and go?"),
             _q("发作时有无头晕或晕厥？", "Any dizziness or fainting during episodes?"))),
    Symptom("dyspnea", ("呼吸困难", "气促", "气短", "气急", "喘不过气", "憋气", "呼吸急促"),
            ("shortness of breath", "short of breath", "breathlessness", "breathless", "dyspnea", "dyspnoea",
             "difficulty breathing", "trouble breathing"),
            {"respiratory": 0.8, "cardiology": 0.5, "emergency": 0.3},
            (_q("是否能平卧？夜间是否憋醒？", "Can the patient lie flat? Any waking at night breathless?"),
             _q("静息时也气促吗？", "Is the patient breathless at rest?"),
             _q("血氧饱和度是多少？", "What is the oxygen saturation?"))),
    Symptom("cough", ("咳嗽", "干咳", "咳"), ("cough", "coughing", "dry cough"),
            {"respiratory": 1.0},
            (_q("咳嗽有痰吗？痰是什么颜色？", "Is the cough productive? What colour is the sputum?"),
             _q("是否接触过类似症状的人？", "Any contact with people with similar symptoms?"))),
    Symptom("sputum", ("咳痰", "咯痰", "黄痰", "脓痰", "白痰"), ("sputum", "phlegm", "productive cough"),
            {"respiratory": 0.8},
            (_q("痰量多少？有无异味？", "How much sputum, and does it smell?"),)),
    Symptom("hemoptysis", ("咯血", "咳血", "痰中带血"), ("hemoptysis", "haemoptysis", "coughing blood",
                                                   "coughing up blood", "blood in sputum"),
            {"respiratory": 1.0, "emergency": 0.3},
            (_q("咯血量大约多少毫升？", "Roughly how much blood (mL)?"),
             _q("有无结核病史或长期吸烟史？", "Any history of tuberculosis or heavy smoking?"))),
    Symptom("wheeze", ("喘息", "哮喘发作", "哮鸣", "喘鸣"), ("wheeze", "wheezing", "asthma attack"),
            {"respiratory": 1.0},
            (_q("以前有哮喘或慢阻肺吗？", "Any history of asthma or COPD?"),)),
    Symptom("fever", ("发热", "发烧", "低热", "体温升高", "畏寒", "寒战"),
            ("fever", "febrile", "pyrexia", "high temperature", "chills", "rigors"),
            {"infectious_disease": 0.5, "respiratory": 0.3, "internal_medicine": 0.3},
            (_q("最高体温多少度？", "What was the highest temperature?"),
             _q("有无寒战？用过退热药吗？", "Any rigors? Have antipyretics been given?"))),
    Symptom("high_fever", ("高热", "高烧"), ("high fever", "very high fever"),
            {"infectious_disease": 0.6, "respiratory": 0.3},
            (_q("最高体温多少度？", "What was the highest temperature?"),)),
    Symptom("sore_throat", ("咽痛", "喉咙痛", "嗓子疼", "咽喉痛"), ("sore throat", "throat pain"),
            {"otorhinolaryngology": 0.7, "respiratory": 0.3},
            (_q("吞咽是否困难？", "Is swallowing difficult?"),)),
    Symptom("headache", ("头痛", "头疼", "偏头痛"), ("headache", "head ache", "migraine"),
            {"neurology": 1.0},
            (_q("头痛是突然发生的剧烈疼痛吗？", "Did the headache start suddenly and severely?"),
             _q("有无呕吐、颈部僵硬或视物异常？", "Any vomiting, neck stiffness or visual disturbance?"))),
    Symptom("thunderclap_headache", ("剧烈头痛", "爆裂样头痛", "炸裂样头痛"),
            ("severe headache", "worst headache", "thunderclap headache", "worst headache of my life"),
            {"neurology": 1.0, "neurosurgery": 0.6},
            (_q("头痛是否在一分钟内达到最重？", "Did the pain peak within a minute?"),)),
    Symptom("dizziness", ("头晕", "眩晕", "头昏", "天旋地转"), ("dizziness", "dizzy", "vertigo", "lightheaded",
                                                         "light-headed"),
            {"neurology": 0.7, "otorhinolaryngology": 0.3, "cardiology": 0.2},
            (_q("是天旋地转还是头重脚轻？", "Is it spinning vertigo or light-headedness?"),
             _q("与体位改变有关吗？", "Is it triggered by changes in position?"))),
    Symptom("syncope", ("晕厥", "昏厥", "晕倒", "一过性意识丧失", "意识丧失"),
            ("syncope", "fainting", "fainted", "passed out", "blackout", "loss of consciousness"),
            {"cardiology": 0.6, "neurology": 0.6, "emergency": 0.3},
            (_q("晕厥前有无心慌、胸痛？", "Any palpitations or chest pain before fainting?"),
             _q("意识丧失持续多久？醒后有无肢体无力？", "How long was the patient out? Any weakness afterwards?"))),
    Symptom("altered_consciousness", ("意识障碍", "意识不清", "神志不清", "昏迷", "嗜睡", "呼之不应", "意识模糊"),
            ("confusion", "confused", "unresponsive", "coma", "comatose", "altered mental status", "drowsy"),
            {"neurology": 0.7, "emergency": 0.5, "critical_care": 0.5},
            (_q("GCS评分或AVPU分级是多少？", "What is the GCS score or the AVPU level?"),
             _q("指尖血糖是多少？", "What is the capillary blood glucose?"))),
    Symptom("focal_weakness", ("偏瘫", "一侧肢体无力", "单侧肢体无力", "半身不遂", "口角歪斜", "口眼歪斜", "肢体偏瘫"),
            ("one-sided weakness", "weakness on one side", "hemiparesis", "hemiplegia", "facial droop",
             "face drooping", "arm weakness"),
            {"neurology": 1.0, "neurosurgery": 0.3},
            (_q("症状开始的准确时间（最后正常时间）是什么时候？", "When was the patient last seen well (exact time)?"),
             _q("是否已做头颅CT？", "Has a head CT been done?"))),
    Symptom("slurred_speech", ("言语不清", "口齿不清", "说话不清", "失语", "言语含糊"),
            ("slurred speech", "speech difficulty", "difficulty speaking", "aphasia"),
            {"neurology": 1.0},
            (_q("症状开始的准确时间（最后正常时间）是什么时候？",
                "When was the patient last seen well (exact time)?"),)),
    Symptom("seizure", ("抽搐", "癫痫发作", "惊厥", "抽风"),
            ("seizure", "seizures", "convulsion", "convulsions", "fitting"),
            {"neurology": 1.0, "emergency": 0.3},
            (_q("抽搐持续多久？是否反复发作？", "How long did the seizure last? Is it recurring?"),
             _q("既往有癫痫病史吗？", "Any history of epilepsy?"))),
    Symptom("numbness", ("麻木", "发麻", "手脚麻"), ("numbness", "numb", "tingling", "pins and needles"),
            {"neurology": 0.8, "endocrinology": 0.2},
            (_q("麻木是一侧还是双侧？", "Is the numbness on one side or both?"),)),
    Symptom("fatigue", ("乏力", "无力", "疲乏", "疲劳", "没力气"),
            ("fatigue", "weakness", "tiredness", "tired", "malaise"),
            {"internal_medicine": 0.5, "general_practice": 0.4, "endocrinology": 0.2, "hematology": 0.2},
            (_q("乏力持续多久？是否影响日常活动？", "How long has it lasted, and does it limit daily activities?"),)),
    Symptom("abdominal_pain", ("腹痛", "肚子痛", "肚子疼", "上腹痛", "下腹痛", "胃痛", "腹部疼痛", "腹部不适"),
            ("abdominal pain", "stomach ache", "stomachache", "belly pain", "tummy pain", "stomach pain"),
            {"gastroenterology": 0.7, "general_surgery": 0.5},
            (_q("疼痛部位在哪里？有无转移？", "Where is the pain, and has it moved?"),
             _q("疼痛与进食或排便有关吗？", "Is the pain related to eating or bowel movements?"))),
    Symptom("severe_abdominal_pain", ("剧烈腹痛", "腹痛剧烈", "刀割样腹痛", "板状腹"),
            ("severe abdominal pain", "severe stomach pain", "rigid abdomen"),
            {"general_surgery": 1.0, "emergency": 0.4},
            (_q("腹部有无压痛、反跳痛或肌紧张？", "Is there tenderness, rebound or guarding?"),)),
    Symptom("nausea", ("恶心", "反酸", "烧心"), ("nausea", "nauseous", "heartburn", "acid reflux"),
            {"gastroenterology": 0.8}),
    Symptom("vomiting", ("呕吐", "吐了"), ("vomiting", "vomit", "vomited", "throwing up"),
            {"gastroenterology": 0.8},
            (_q("呕吐物是什么？有无咖啡样物或血？", "What is vomited? Any coffee-ground material or blood?"),)),
    Symptom("hematemesis", ("呕血", "吐血", "呕吐咖啡样物"), ("hematemesis", "haematemesis", "vomiting blood",
                                                       "coffee ground vomit"),
            {"gastroenterology": 1.0, "emergency": 0.4},
            (_q("出血量大约多少？有无头晕、心慌？", "Roughly how much blood? Any dizziness or palpitations?"),
             _q("是否服用抗凝或抗血小板药物？", "Is the patient on anticoagulant or antiplatelet drugs?"))),
    Symptom("gi_bleeding", ("黑便", "柏油样便", "便血", "大便带血"),
            ("melena", "melaena", "black stool", "black stools", "tarry stool", "blood in stool", "rectal bleeding"),
            {"gastroenterology": 1.0},
            (_q("便血量和次数如何？", "How much and how often?"),
             _q("是否服用抗凝或抗血小板药物？", "Is the patient on anticoagulant or antiplatelet drugs?"))),
    Symptom("diarrhea", ("腹泻", "拉肚子", "稀便", "水样便"),
            ("diarrhea", "diarrhoea", "loose stools", "watery stools"),
            {"gastroenterology": 0.8, "infectious_disease": 0.3},
            (_q("每天几次？有无脓血便？", "How many times a day? Any blood or mucus?"),)),
    Symptom("constipation", ("便秘", "排便困难"), ("constipation", "constipated"), {"gastroenterology": 0.8}),
    Symptom("jaundice", ("黄疸", "皮肤发黄", "眼睛发黄", "巩膜黄染"), ("jaundice", "yellow skin", "yellow eyes"),
            {"gastroenterology": 0.8, "infectious_disease": 0.3, "general_surgery": 0.2},
            (_q("尿色是否加深？大便颜色是否变浅？", "Is the urine dark or the stool pale?"),)),
    Symptom("urinary_symptoms", ("尿痛", "尿频", "尿急", "排尿困难", "尿不出"),
            ("painful urination", "dysuria", "frequent urination", "urinary urgency", "urinary retention"),
            {"urology": 0.8, "nephrology": 0.3},
            (_q("有无腰痛或发热？", "Any flank pain or fever?"),)),
    Symptom("hematuria", ("血尿", "尿血", "尿中带血"),
            ("hematuria", "haematuria", "blood in urine", "blood in the urine"),
            {"urology": 0.8, "nephrology": 0.5}),
    Symptom("edema", ("水肿", "浮肿", "腿肿", "下肢水肿", "脚肿"), ("edema", "oedema", "swelling", "swollen legs",
                                                         "swollen ankles"),
            {"nephrology": 0.5, "cardiology": 0.5},
            (_q("水肿是双侧还是单侧？按压后有无凹陷？", "Is the swelling on both sides? Does it pit on pressure?"),
             _q("尿量有无减少？", "Has urine output decreased?"))),
    Symptom("oliguria", ("少尿", "无尿", "尿量减少"),
            ("oliguria", "anuria", "reduced urine output", "not passing urine"),
            {"nephrology": 1.0, "critical_care": 0.3}),
    Symptom("hyperglycemia", ("血糖高", "高血糖", "血糖升高", "多饮", "多尿", "口渴"),
            ("high blood sugar", "high blood glucose", "hyperglycemia", "hyperglycaemia", "excessive thirst",
             "polyuria", "polydipsia"),
            {"endocrinology": 1.0},
            (_q("目前血糖是多少？在用哪些降糖药或胰岛素？", "What is the current glucose? Which drugs or insulin?"),)),
    Symptom("hypoglycemia", ("低血糖", "血糖低"), ("hypoglycemia", "hypoglycaemia", "low blood sugar"),
            {"endocrinology": 1.0, "emergency": 0.3},
            (_q("目前血糖是多少？是否已补充糖分？", "What is the glucose now? Has sugar been given?"),)),
    Symptom("weight_loss", ("消瘦", "体重下降", "体重减轻"), ("weight loss", "losing weight", "lost weight"),
            {"endocrinology": 0.4, "oncology": 0.4, "gastroenterology": 0.3},
            (_q("多长时间内体重下降了多少公斤？", "How many kilograms over what period?"),)),
    Symptom("hypertension", ("血压高", "血压升高", "高血压"), ("high blood pressure", "hypertension",
                                                       "raised blood pressure"),
            {"cardiology": 1.0},
            (_q("目前血压是多少？平时服用哪些降压药？", "What is the blood pressure now? Which antihypertensives?"),)),
    Symptom("rash", ("皮疹", "红疹", "瘙痒", "荨麻疹", "起疹子", "皮肤痒"),
            ("rash", "itching", "itchy", "hives", "urticaria"),
            {"dermatology": 1.0},
            (_q("皮疹分布在哪里？是否伴有发热？", "Where is the rash, and is there a fever?"),
             _q("最近有无新用药物或接触过敏原？", "Any new drugs or allergen exposure?"))),
    Symptom("joint_pain", ("关节痛", "关节肿痛", "关节肿胀", "关节疼"), ("joint pain", "arthralgia", "swollen joint",
                                                           "swollen joints"),
            {"rheumatology": 0.7, "orthopedics": 0.4},
            (_q("哪些关节受累？有无晨僵？", "Which joints, and is there morning stiffness?"),)),
    Symptom("back_pain", ("腰痛", "背痛", "腰背痛", "腰疼", "颈痛"), ("back pain", "low back pain", "neck pain",
                                                          "backache"),
            {"orthopedics": 0.8, "rehabilitation": 0.3},
            (_q("有无下肢麻木无力或大小便障碍？", "Any leg numbness or weakness, or bladder or bowel trouble?"),)),
    Symptom("trauma", ("外伤", "摔伤", "跌倒", "骨折", "车祸", "撞伤", "扭伤"),
            ("injury", "injured", "trauma", "fracture", "fall", "fell", "car accident", "sprain"),
            {"orthopedics": 0.8, "general_surgery": 0.3, "emergency": 0.3},
            (_q("受伤机制是什么？是否有头部受伤？", "How did the injury happen? Was the head injured?"),
             _q("受伤部位能否活动？有无畸形？", "Can the injured part move? Any deformity?"))),
    Symptom("head_injury", ("头部外伤", "头外伤", "撞到头", "脑外伤"), ("head injury", "head trauma", "hit head",
                                                             "hit his head", "hit her head"),
            {"neurosurgery": 1.0, "emergency": 0.3},
            (_q("受伤后有无意识丧失或呕吐？", "Any loss of consciousness or vomiting after the injury?"),)),
    Symptom("vaginal_bleeding", ("阴道出血", "阴道流血", "月经量多", "不规则出血"),
            ("vaginal bleeding", "heavy periods", "heavy menstrual bleeding"),
            {"obstetrics_gynecology": 1.0},
            (_q("末次月经是什么时候？", "When was the last menstrual period?"),
             _q("出血量多少？有无血块？", "How heavy is the bleeding? Any clots?"))),
    Symptom("pregnancy", ("怀孕", "妊娠", "孕妇", "停经"), ("pregnant", "pregnancy", "missed period"),
            {"obstetrics_gynecology": 1.0},
            (_q("孕周是多少？", "How many weeks pregnant?"),)),
    Symptom("pediatric", ("小儿", "婴儿", "患儿", "儿童", "新生儿", "宝宝"), ("child", "infant", "baby", "toddler",
                                                                "newborn"),
            {"pediatrics": 1.0},
            (_q("患儿年龄和体重是多少？", "What are the child's age and weight?"),
             _q("精神状态和进食情况如何？", "How alert is the child, and are they feeding?"))),
    Symptom("vision", ("视力下降", "视物模糊", "眼痛", "眼红", "看不清"),
            ("blurred vision", "vision loss", "loss of vision", "eye pain", "red eye"),
            {"ophthalmology": 1.0},
            (_q("是单眼还是双眼？突然发生吗？", "One eye or both? Did it start suddenly?"),)),
    Symptom("ear", ("耳痛", "耳鸣", "听力下降", "耳聋"), ("ear pain", "earache", "tinnitus", "hearing loss"),
            {"otorhinolaryngology": 1.0}),
    Symptom("epistaxis", ("鼻出血", "流鼻血", "鼻衄"), ("nosebleed", "nose bleed", "epistaxis"),
            {"otorhinolaryngology": 1.0},
            (_q("出血是否能压迫止住？血压多少？", "Does pressure stop it? What is the blood pressure?"),)),
    Symptom("toothache", ("牙痛", "牙疼", "牙龈肿痛"), ("toothache", "tooth pain", "dental pain"),
            {"stomatology": 1.0}),
    Symptom("low_mood", ("抑郁", "情绪低落", "焦虑", "失眠", "睡不着", "幻听"), ("depression", "depressed", "low mood",
                                                                   "anxiety", "anxious", "insomnia",
                                                                   "hearing voices"),
            {"psychiatry": 1.0},
            (_q("有无自伤或自杀的想法？", "Any thoughts of self-harm or suicide?"),)),
    Symptom("suicidal", ("自杀", "轻生", "想死", "自伤"), ("suicidal", "suicide", "self-harm", "self harm"),
            {"psychiatry": 1.0, "emergency": 0.3},
            (_q("是否有具体计划或已采取行动？", "Is there a plan, or has any action been taken?"),)),
    Symptom("anemia", ("贫血", "面色苍白", "皮下出血", "瘀斑", "牙龈出血"), ("anemia", "anaemia", "pale", "pallor",
                                                                "bruising", "easy bruising"),
            {"hematology": 1.0},
            (_q("血常规结果如何？", "What does the full blood count show?"),)),
    Symptom("lump", ("肿块", "包块", "淋巴结肿大", "结节"), ("lump", "mass", "swollen lymph nodes", "nodule"),
            {"oncology": 0.5, "general_surgery": 0.5, "hematology": 0.2},
            (_q("肿块多大？生长快吗？有无压痛？", "How big is it, is it growing fast, and is it tender?"),)),
    Symptom("poisoning", ("中毒", "误服", "农药", "服药过量"), ("poisoning", "overdose", "ingestion", "pesticide"),
            {"emergency": 1.0, "critical_care": 0.5},
            (_q("服用了什么？剂量和时间？", "What was taken, how much and when?"),)),
)

_RED_FLAGS: tuple[RedFlag, ...] = (
    RedFlag("acs", frozenset({"chest_pain", "diaphoresis"}), Urgency.EMERGENCY,
            "胸痛伴大汗：警惕急性冠脉综合征", "Chest pain with sweating: suspected acute coronary syndrome",
            {"cardiology": 1.0, "emergency": 0.5}),
    RedFlag("chest_pain_dyspnea", frozenset({"chest_pain", "dyspnea"}), Urgency.EMERGENCY,
            "胸痛伴呼吸困难：警惕急性冠脉综合征、肺栓塞、主动脉夹层",
            "Chest pain with breathlessness: consider ACS, pulmonary embolism, aortic dissection",
            {"cardiology": 0.5, "emergency": 0.5}),
    RedFlag("chest_pain_syncope", frozenset({"chest_pain", "syncope"}), Urgency.EMERGENCY,
            "胸痛伴晕厥", "Chest pain with syncope", {"cardiology": 0.5, "emergency": 0.5}),
    RedFlag("chest_pain", frozenset({"chest_pain"}), Urgency.URGENT, "胸痛", "Chest pain"),
    RedFlag("stroke_weakness", frozenset({"focal_weakness"}), Urgency.EMERGENCY,
            "一侧肢体无力或口角歪斜：警惕急性脑卒中", "Focal weakness or facial droop: suspected acute stroke",
            {"neurology": 1.0}),
    RedFlag("stroke_speech", frozenset({"slurred_speech"}), Urgency.EMERGENCY,
            "言语不清：警惕急性脑卒中", "Speech disturbance: suspected acute stroke", {"neurology": 1.0}),
    RedFlag("altered_consciousness", frozenset({"altered_consciousness"}), Urgency.EMERGENCY,
            "意识障碍", "Altered consciousness"),
    RedFlag("seizure", frozenset({"seizure"}), Urgency.EMERGENCY, "抽搐", "Seizure"),
    RedFlag("thunderclap_headache", frozenset({"thunderclap_headache"}), Urgency.EMERGENCY,
            "突发剧烈头痛：警惕蛛网膜下腔出血", "Sudden severe headache: suspected subarachnoid haemorrhage",
            {"neurosurgery": 0.5}),
    RedFlag("syncope", frozenset({"syncope"}), Urgency.URGENT, "晕厥", "Syncope"),
    RedFlag("acute_dyspnea", frozenset({"dyspnea"}), Urgency.EMERGENCY,
            "急性呼吸困难（24小时内）", "Acute breathlessness (within 24 h)", max_onset_hours=24),
    RedFlag("dyspnea", frozenset({"dyspnea"}), Urgency.URGENT, "呼吸困难", "Breathlessness"),
    RedFlag("hemoptysis", frozenset({"hemoptysis"}), Urgency.URGENT, "咯血", "Haemoptysis"),
    RedFlag("hematemesis", frozenset({"hematemesis"}), Urgency.EMERGENCY,
            "呕血：警惕上消化道大出血", "Haematemesis: suspected upper GI bleeding"),
    RedFlag("gi_bleeding", frozenset({"gi_bleeding"}), Urgency.URGENT, "消化道出血", "Gastrointestinal bleeding"),
    RedFlag("acute_abdomen", frozenset({"severe_abdominal_pain"}), Urgency.URGENT,
            "剧烈腹痛：警惕急腹症", "Severe abdominal pain: possible acute abdomen", {"general_surgery": 0.5}),
    RedFlag("pregnancy_bleeding", frozenset({"pregnancy", "vaginal_bleeding"}), Urgency.EMERGENCY,
            "妊娠期阴道出血", "Vaginal bleeding in pregnancy", {"obstetrics_gynecology": 1.0}),
    RedFlag("pregnancy_abdominal_pain", frozenset({"pregnancy", "abdominal_pain"}), Urgency.URGENT,
            "妊娠期腹痛：警惕异位妊娠", "Abdominal pain in pregnancy: consider ectopic pregnancy",
            {"obstetrics_gynecology": 1.0}),
    RedFlag("febrile_child", frozenset({"pediatric", "high_fever"}), Urgency.URGENT,
            "患儿高热", "High fever in a child"),
    RedFlag("febrile_seizure", frozenset({"fever", "seizure"}), Urgency.EMERGENCY,
            "发热伴抽搐", "Fever with seizure"),
    RedFlag("head_injury", frozenset({"head_injury"}), Urgency.URGENT, "头部外伤", "Head injury"),
    RedFlag("suicidal", frozenset({"suicidal"}), Urgency.EMERGENCY, "自杀风险", "Suicide risk"),
    RedFlag("poisoning", frozenset({"poisoning"}), Urgency.EMERGENCY, "中毒", "Poisoning"),
    RedFlag("hypoglycemia", frozenset({"hypoglycemia"}), Urgency.URGENT, "低血糖", "Hypoglycaemia"),
    RedFlag("oliguria", frozenset({"oliguria"}), Urgency.URGENT, "少尿或无尿", "Oliguria or anuria"),
)

SYMPTOMS: Mapping[str, Symptom] = MappingProxyType({s.id: s for s in _SYMPTOMS})
RED_FLAGS: tuple[RedFlag, ...] = _RED_FLAGS

# Negation cues (NegEx-style: they negate the symptoms that follow, up to a scope breaker).
NEGATIONS_ZH: tuple[str, ...] = ("无", "没有", "没", "否认", "未见", "未", "不伴", "不伴有", "不", "排除")
NEGATIONS_EN: tuple[str, ...] = ("no", "not", "denies", "denied", "deny", "without", "negative for", "free of",
                                 "absence of", "never had")
# Words that end a negation's scope ("无发热，但有咳嗽"; "no fever but cough"). Clause punctuation also does.
BREAKERS_ZH: tuple[str, ...] = ("但", "但是", "伴", "伴有", "有", "出现", "然而", "可是")
BREAKERS_EN: tuple[str, ...] = ("but", "however", "although", "though", "with", "has", "have", "had", "reports",
                                "complains", "presents", "yet")
CLAUSE_PUNCTUATION = frozenset(".,;:!?。，；：！？\n()（）")


def _check() -> None:
    """Red flags and symptoms refer to known ids (the lexicon is data: a typo must fail at import)."""
    for flag in RED_FLAGS:
        unknown = flag.requires - SYMPTOMS.keys()
        if unknown:
            raise ValueError(f"red flag {flag.id} needs unknown symptoms {sorted(unknown)}")


_check()
