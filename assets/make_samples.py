"""Generate the fictional sample documents shipped in ``assets/`` (a dev-time tool, not needed to run the app).

    pip install fpdf2                              # not in requirements.txt: only this script needs it
    apt-get install fonts-wqy-zenhei espeak-ng     # CJK font for the Chinese report; voice for the briefing
    python assets/make_samples.py                  # writes the PDFs and the briefing video next to this file

Everything in these documents is invented: the companies, people, places and figures. Every page says so.
The PDFs are checked after writing: pypdf must extract the text of every page, and the Chinese text must come out
without spaces between CJK characters.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
EN_PDF = HERE / "northwind_metals_sustainability_report_2023.pdf"
ZH_PDF = HERE / "qinghe_energy_esg_report_2023_zh.pdf"
BRIEFING = HERE / "northwind_metals_briefing_2023.mp4"

CJK_FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)
LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
LATIN_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")

EN_NOTICE = "Fictional sample data - not a real company. All names and figures are invented."
ZH_NOTICE = "虚构示例数据——非真实公司，所有名称与数字均为虚构。Fictional sample data - not a real company."

# Each page: (heading, [blocks]); a block is a paragraph string, or a table as a list of rows (first row = header).
EN_PAGES: list[tuple[str, list]] = [
    (
        "Northwind Metals plc - Sustainability Report 2023",
        [
            "About this report",
            "This is the 2023 sustainability report of Northwind Metals plc, a fictional producer of recycled "
            "aluminium and copper. It covers the calendar year 2023 (1 January to 31 December 2023) and compares it "
            "with 2022. Unless stated otherwise, figures cover all four operating sites: Port Ellery smelter, "
            "Ashcombe rolling mill, Kestrel Bay recycling centre and the Redfern copper refinery.",
            "Northwind Metals employs 3,420 people and produced 512,000 tonnes of metal in 2023 (2022: 498,000 "
            "tonnes). Revenue was GBP 2.1 billion.",
            "The report follows the GHG Protocol for emissions and is aligned with the recommendations of the Task "
            "Force on Climate-related Financial Disclosures (TCFD). Harbour Assurance LLP, also fictional, provided "
            "limited assurance over the Scope 1, Scope 2 and water figures.",
            [
                ["Key figure", "2022", "2023"],
                ["Metal produced (tonnes)", "498,000", "512,000"],
                ["Scope 1 and 2 emissions (tCO2e)", "677,300", "610,300"],
                ["Renewable electricity share", "31%", "46%"],
                ["Employees", "3,310", "3,420"],
            ],
        ],
    ),
    (
        "1. Climate change: greenhouse gas emissions",
        [
            "Our total Scope 1 emissions fell from 412,000 tCO2e in 2022 to 388,500 tCO2e in 2023, a reduction of "
            "5.7%. The main driver was the switch of two remelt furnaces at the Port Ellery smelter from natural gas "
            "to electric induction.",
            "Scope 2 emissions (market-based) fell from 265,300 tCO2e in 2022 to 221,800 tCO2e in 2023, a reduction "
            "of 16.4%, because a new power purchase agreement with the Gull Head wind farm started supplying the "
            "Ashcombe rolling mill in April 2023. Location-based Scope 2 emissions were 298,400 tCO2e in 2023 "
            "(2022: 301,900 tCO2e).",
            "Scope 3 emissions were 1,846,000 tCO2e in 2023 (2022: 1,920,000 tCO2e). Purchased goods and services, "
            "mainly primary aluminium bought to blend with scrap, make up 71% of Scope 3.",
            [
                ["Emissions (tCO2e)", "2022", "2023", "Change"],
                ["Scope 1", "412,000", "388,500", "-5.7%"],
                ["Scope 2 (market-based)", "265,300", "221,800", "-16.4%"],
                ["Scope 2 (location-based)", "301,900", "298,400", "-1.2%"],
                ["Scope 3", "1,920,000", "1,846,000", "-3.9%"],
            ],
            "Emissions intensity (Scope 1 and 2 per tonne of metal produced) fell from 1.36 tCO2e per tonne in 2022 "
            "to 1.19 tCO2e per tonne in 2023.",
        ],
    ),
    (
        "2. Climate targets and transition plan",
        [
            "Northwind Metals has committed to reach net-zero greenhouse gas emissions across Scopes 1, 2 and 3 by "
            "2045.",
            "Our interim target is to cut absolute Scope 1 and 2 emissions by 42% by 2030 from the 2022 base year. "
            "By the end of 2023 we had achieved a reduction of 9.9% against that base year.",
            "We aim to source 80% of our electricity from renewable sources by 2028. The renewable share was 31% in "
            "2022 and 46% in 2023.",
            "For Scope 3 we target a 25% reduction in emissions per tonne of purchased metal by 2030, mainly by "
            "raising the recycled content of our products from 58% today to 75%.",
            "The transition plan budgets GBP 340 million of capital expenditure between 2024 and 2030, of which GBP "
            "190 million is for electrifying furnaces and GBP 60 million for on-site solar at Kestrel Bay.",
        ],
    ),
    (
        "3. Water",
        [
            "Total water withdrawal was 5.8 million cubic metres in 2023, down from 6.4 million cubic metres in "
            "2022. 38% of the water we used in 2023 was recycled on site (2022: 33%).",
            "Two of our four sites, Redfern and Kestrel Bay, are in areas of high water stress. At these sites we "
            "target a 20% reduction in water withdrawal intensity by 2027 from 2022.",
            [
                ["Water", "2022", "2023"],
                ["Withdrawal (million m3)", "6.4", "5.8"],
                ["Discharge (million m3)", "4.1", "3.7"],
                ["Recycled share", "33%", "38%"],
            ],
            "There were no significant spills and no fines for water permit breaches in 2023.",
        ],
    ),
    (
        "4. Our people: workforce, health and safety",
        [
            "At the end of 2023 Northwind Metals had 3,420 employees (2022: 3,310). Women made up 24% of the "
            "workforce and 31% of senior management.",
            "The lost-time injury frequency rate (LTIFR) improved to 0.62 per million hours worked in 2023, from "
            "0.81 in 2022. There were no fatalities in 2022 or 2023.",
            "Employees received an average of 28 hours of training in 2023. Voluntary employee turnover was 9.4%.",
            [
                ["Workforce", "2022", "2023"],
                ["Employees", "3,310", "3,420"],
                ["Women in workforce", "23%", "24%"],
                ["Women in senior management", "28%", "31%"],
                ["LTIFR (per million hours)", "0.81", "0.62"],
                ["Training hours per employee", "25", "28"],
            ],
        ],
    ),
    (
        "5. Governance",
        [
            "The Board of Northwind Metals has nine directors, six of whom are independent and three of whom are "
            "women. The Board Sustainability Committee, chaired by independent director Dr Imogen Hale, meets four "
            "times a year and oversees climate risk, water and safety.",
            "15% of the annual bonus of executive directors is linked to climate targets: the Scope 1 and 2 "
            "reduction and the renewable electricity share.",
            "Our anti-bribery policy applies to all employees and suppliers. In 2023, 97% of employees completed "
            "ethics training and no confirmed cases of corruption were reported.",
            "Contact: sustainability@northwind-metals.example (fictional address).",
        ],
    ),
]

ZH_PAGES: list[tuple[str, list]] = [
    (
        "青禾能源股份有限公司 2023年环境、社会及管治（ESG）报告",
        [
            "关于本报告",
            "本报告是青禾能源股份有限公司（Qinghe Energy，虚构公司）发布的2023年度环境、社会及管治报告，"
            "报告期为2023年1月1日至2023年12月31日，并与2022年数据进行比较。",
            "青禾能源主要从事风电、光伏发电及储能业务，总部位于虚构的云川市。截至2023年底，公司员工总数为5,870人，"
            "可再生能源装机容量为4.6吉瓦。",
            "本报告参照温室气体核算体系（GHG Protocol）及香港联交所《环境、社会及管治报告指引》编制。",
            [
                ["关键指标", "2022年", "2023年"],
                ["可再生能源装机（吉瓦）", "3.9", "4.6"],
                ["范围一排放（万吨二氧化碳当量）", "86.4", "79.2"],
                ["员工总数（人）", "5,640", "5,870"],
            ],
        ],
    ),
    (
        "一、温室气体排放",
        [
            "2023年，公司范围一温室气体排放为79.2万吨二氧化碳当量，较2022年的86.4万吨下降8.3%，"
            "主要原因是关停了一台燃煤备用机组。",
            "范围二排放（市场法）由2022年的12.3万吨二氧化碳当量下降至2023年的10.1万吨，"
            "主要得益于自建光伏电站为办公及运维场所供电。",
            "范围三排放为198万吨二氧化碳当量（2022年：210万吨），其中采购的风机与光伏组件占比最高。",
            [
                ["排放（万吨二氧化碳当量）", "2022年", "2023年"],
                ["范围一", "86.4", "79.2"],
                ["范围二（市场法）", "12.3", "10.1"],
                ["范围三", "210", "198"],
            ],
        ],
    ),
    (
        "二、气候目标与转型计划",
        [
            "公司承诺于2030年前实现运营碳达峰，并于2050年实现全价值链碳中和。",
            "公司计划到2030年使可再生能源装机占总装机的比例达到60%，2023年该比例为38%（2022年为33%）。",
            "公司目标是到2030年将范围一和范围二排放较2022年基准年减少50%。",
            "2024年至2030年，公司计划投入120亿元用于新增风电和光伏项目，另投入15亿元建设储能电站。",
        ],
    ),
    (
        "三、水资源管理",
        [
            "2023年公司总取水量为1,260万立方米，较2022年的1,390万立方米下降9.4%。",
            "循环水利用率达到92%（2022年：89%）。公司位于西北地区的三座光伏电站采用干式清洗技术，减少组件清洗用水。",
            "公司目标是到2027年将单位发电量取水强度较2022年降低15%。",
        ],
    ),
    (
        "四、员工与安全",
        [
            "截至2023年底，公司员工总数为5,870人（2022年：5,640人），其中女性员工占28%，女性管理人员占22%。",
            "2023年员工人均培训时长为42小时。损失工时事故率为每百万工时0.35（2022年：0.48），全年未发生死亡事故。",
            "公司为全体一线员工提供年度职业健康体检，体检覆盖率为100%。",
        ],
    ),
    (
        "五、公司治理",
        [
            "公司董事会由11名董事组成，其中独立非执行董事4名，女性董事2名。",
            "董事会下设ESG委员会，由独立董事林若溪女士担任主任，每年至少召开三次会议，负责审议气候风险及ESG目标。",
            "2023年公司未发生经确认的贪腐事件，全体员工均签署了《商业行为准则》承诺书。",
        ],
    ),
]

# Written for espeak-ng and Whisper base: numbers spelled the way they are read, and words the synthetic voice makes
# ambiguous avoided ("Scope" comes out as "cope"). Whisper base hears "Northwind Medals"; close enough for search.
BRIEFING_SCRIPT = [
    "Welcome to the Northwind Metals sustainability briefing for the year twenty twenty-three. Northwind "
    "Metals is a fictional company, and every figure in this briefing is invented.",
    "In twenty twenty-three, our direct emissions from fuel burned at our sites fell to 388,500 tonnes of carbon "
    "dioxide equivalent. That is five point seven percent less than the year before.",
    "Emissions from purchased electricity fell by sixteen percent, thanks to our new agreement with the Gull Head "
    "wind farm.",
    "Renewable power supplied nearly half of our electricity. Our target is eighty percent by twenty twenty-eight.",
    "We also reduced water withdrawal to 5.8 million cubic metres, and there were no fatalities at our sites.",
    "Our goal remains net zero emissions by twenty forty-five. Thank you for listening.",
]


def _fonts(pdf, zh: bool) -> tuple[str, str]:
    """Register fonts; returns (regular, bold) family names."""
    if zh:
        font = next((p for p in CJK_FONTS if p.exists()), None)
        if font is None:
            sys.exit("no CJK font found; apt-get install fonts-wqy-zenhei")
        pdf.add_font("cjk", "", str(font), collection_font_number=0)
        # No bold CJK face is installed: headings use the regular face (registered as "B" for tables).
        pdf.add_font("cjk", "B", str(font), collection_font_number=0)
        return "cjk", "cjk"
    pdf.add_font("dejavu", "", str(LATIN_FONT))
    pdf.add_font("dejavu", "B", str(LATIN_BOLD))
    return "dejavu", "dejavu"


def make_pdf(path: Path, pages: list[tuple[str, list]], zh: bool) -> None:
    from fpdf import FPDF

    notice = ZH_NOTICE if zh else EN_NOTICE
    title = pages[0][0]

    class Report(FPDF):
        def header(self) -> None:
            self.set_font(regular, "", 8)
            self.set_text_color(180, 40, 40)
            self.cell(0, 5, notice, align="C", new_x="LMARGIN", new_y="NEXT")
            self.set_text_color(0, 0, 0)
            self.ln(3)

        def footer(self) -> None:
            self.set_y(-14)
            self.set_font(regular, "", 8)
            self.set_text_color(110, 110, 110)
            self.cell(0, 5, f"{title}  |  {self.page_no()}", align="C")
            self.set_text_color(0, 0, 0)

    pdf = Report(format="A4")
    pdf.set_title(title)
    pdf.set_author("Fictional sample data")
    pdf.set_creation_date(__import__("datetime").datetime(2024, 3, 1, tzinfo=__import__("datetime").UTC))
    regular, bold = _fonts(pdf, zh)
    pdf.set_auto_page_break(True, margin=20)
    for heading, blocks in pages:
        pdf.add_page()
        pdf.set_font(bold, "B", 17 if heading == title else 14)
        pdf.set_text_color(20, 83, 45)
        pdf.multi_cell(0, 9, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
        pdf.ln(2)
        for block in blocks:
            if isinstance(block, list):
                pdf.set_font(regular, "", 10)
                with pdf.table(
                    first_row_as_headings=True, line_height=7, text_align="LEFT", borders_layout="HORIZONTAL_LINES"
                ) as table:
                    for row in block:
                        r = table.row()
                        for cell in row:
                            r.cell(cell)
                pdf.ln(3)
            elif len(block) < 30 and not block.endswith(("。", ".")):
                pdf.set_font(bold, "B", 12)
                pdf.multi_cell(0, 7, block, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1)
            else:
                pdf.set_font(regular, "", 11)
                pdf.multi_cell(0, 6.5, block, align="L", new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2.5)
    pdf.output(str(path))


def check_pdf(path: Path, pages: list[tuple[str, list]], zh: bool) -> None:
    """pypdf must give back every page's text; Chinese must have no spaces between CJK characters."""
    from pypdf import PdfReader

    reader = PdfReader(path)
    assert len(reader.pages) == len(pages), (path, len(reader.pages))
    for i, (page, (heading, blocks)) in enumerate(zip(reader.pages, pages, strict=True), 1):
        text = page.extract_text() or ""
        flat = re.sub(r"\s+", "" if zh else " ", text)
        assert ("虚构示例数据" if zh else "Fictional sample data") in flat, (path.name, i, "notice missing")
        for block in [heading, *[b for b in blocks if isinstance(b, str)]]:
            want = re.sub(r"\s+", "" if zh else " ", block)
            assert want in flat, (path.name, i, want[:60], flat[:400])
        if zh:
            spaced = re.findall(r"[\u4e00-\u9fff] +[\u4e00-\u9fff]", text)
            assert not spaced, (path.name, i, spaced[:5])
    print(f"ok  {path.name}: {len(reader.pages)} pages, text extracts cleanly")


def make_briefing(path: Path) -> None:
    """A short video: a title card and a fictional spokesperson's voice (espeak-ng), H.264 + AAC in MP4."""
    import av
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng not found; apt-get install espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "voice.wav"
        text = " ".join(BRIEFING_SCRIPT)
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-g", "6", "-w", str(wav), text], check=True)
        with av.open(str(wav)) as src:
            stream = src.streams.audio[0]
            rate = stream.rate
            samples = np.concatenate([f.to_ndarray().reshape(-1) for f in src.decode(stream)])
    pcm = samples.astype(np.float32) / (32768.0 if samples.dtype == np.int16 else 1.0)
    duration = len(pcm) / rate

    width, height, fps = 640, 360, 2
    card = Image.new("RGB", (width, height), (20, 83, 45))
    draw = ImageDraw.Draw(card)
    big = ImageFont.truetype(str(LATIN_BOLD), 34)
    small = ImageFont.truetype(str(LATIN_FONT), 18)
    draw.text((40, 110), "Northwind Metals", font=big, fill=(255, 255, 255))
    draw.text((40, 160), "Sustainability briefing 2023", font=small, fill=(220, 240, 225))
    draw.text((40, 290), "Fictional sample data - not a real company", font=small, fill=(255, 210, 120))
    frame_rgb = np.asarray(card)

    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        vs = out.add_stream("libx264", rate=fps, options={"crf": "30", "preset": "veryslow", "tune": "stillimage"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        aud = out.add_stream("aac", rate=22050, layout="mono")
        aud.bit_rate = 64000
        for i in range(int(duration * fps) + 1):
            frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=22050)
        chunk = 1024 * 4
        for start in range(0, len(pcm), chunk):
            part = pcm[start : start + chunk].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(part, format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for rf in resampler.resample(frame):
                for packet in aud.encode(rf):
                    out.mux(packet)
        for rf in resampler.resample(None):
            for packet in aud.encode(rf):
                out.mux(packet)
        for packet in aud.encode():
            out.mux(packet)
    print(f"ok  {path.name}: {duration:.1f} s, {path.stat().st_size // 1024} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-video", action="store_true", help="only the PDFs")
    args = parser.parse_args()
    make_pdf(EN_PDF, EN_PAGES, zh=False)
    check_pdf(EN_PDF, EN_PAGES, zh=False)
    make_pdf(ZH_PDF, ZH_PAGES, zh=True)
    check_pdf(ZH_PDF, ZH_PAGES, zh=True)
    if not args.no_video:
        make_briefing(BRIEFING)


if __name__ == "__main__":
    main()
